#include "executor-rpc/held-records.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executor-rpc/executor-wire.h"
#include "executors/threads.h"
#include "schema/held-job.capnp.h"

namespace runner::executor_rpc {
namespace {

kj::String describeMode(mode_t mode) {
  char text[8];
  snprintf(text, sizeof(text), "%04o", unsigned(mode & 07777));
  return kj::str(text);
}

// `fd` (the directory `path`) is root's and nobody else may write to it.
void requireClosedDirectory(int fd, kj::StringPtr path) {
  struct stat st;
  KJ_SYSCALL(fstat(fd, &st), path);
  if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    KJ_FAIL_REQUIRE(kj::str(path, " must be owned by uid ", geteuid(),
                            " and writable by nobody else (it is owned by uid ", st.st_uid,
                            ", mode ", describeMode(st.st_mode), ")"));
  }
}

kj::AutoCloseFd openDirectory(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) KJ_FAIL_REQUIRE(kj::str("cannot open ", path, ": ", strerror(errno)));
  return kj::AutoCloseFd(fd);
}

kj::Array<capnp::word> serialize(const HeldRecord& record) {
  capnp::MallocMessageBuilder message;
  auto out = message.initRoot<wire::HeldJobRecord>();
  out.setJobId(record.jobId);
  out.setExecutor(record.executor);
  out.setBootId(record.bootId);
  auto state = out.initState();
  switch (record.state) {
    case HeldRecord::State::LAUNCHING:
      state.setLaunching();
      break;
    case HeldRecord::State::RUNNING:
      state.setRunning();
      break;
    case HeldRecord::State::ENDED:
      fillExitStatus(state.initEnded(), record.end);
      break;
  }
  auto& trace = record.trace;
  out.setPid(trace.pid);
  out.setPidStartTime(trace.pidStartTime);
  out.setCgroupVersion(trace.cgroupVersion);
  auto paths = out.initCgroupPaths(trace.cgroupPaths.size());
  for (auto i : kj::indices(trace.cgroupPaths)) paths.set(i, trace.cgroupPaths[i]);
  out.setAccounting(trace.accounting);
  fillPlacement(out.initPlacement(), trace.placement);
  return capnp::messageToFlatArray(message);
}

HeldRecord parse(wire::HeldJobRecord::Reader in) {
  HeldRecord record;
  record.jobId = kj::str(in.getJobId());
  record.executor = kj::str(in.getExecutor());
  record.bootId = kj::str(in.getBootId());
  auto state = in.getState();
  switch (state.which()) {
    case wire::HeldJobRecord::State::LAUNCHING:
      record.state = HeldRecord::State::LAUNCHING;
      break;
    case wire::HeldJobRecord::State::RUNNING:
      record.state = HeldRecord::State::RUNNING;
      break;
    case wire::HeldJobRecord::State::ENDED:
      record.state = HeldRecord::State::ENDED;
      record.end = toExitStatus(state.getEnded());
      break;
    default:
      KJ_FAIL_REQUIRE("a state this supervisor does not know", uint(state.which()));
  }
  record.trace.pid = in.getPid();
  record.trace.pidStartTime = in.getPidStartTime();
  record.trace.cgroupVersion = in.getCgroupVersion();
  record.trace.cgroupPaths = KJ_MAP(path, in.getCgroupPaths()) {
    return kj::str(path);
  };
  record.trace.accounting = in.getAccounting();
  record.trace.placement = toPlacement(in.getPlacement());
  return record;
}

// The versions of a record file, oldest first: `words` holds whole messages, possibly followed by
// one cut short (a write the machine did not finish). `wholeWords` is how many words they take.
struct Versions {
  kj::Vector<HeldRecord> records;
  size_t wholeWords = 0;
};

Versions parseVersions(kj::ArrayPtr<const capnp::word> words) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = HeldRecords::MAX_RECORD_BYTES / sizeof(capnp::word);
  Versions versions;
  auto rest = words;
  while (rest.size() > 0) {
    auto failure = kj::runCatchingExceptions([&]() {
      capnp::FlatArrayMessageReader message(rest, options);
      auto record = parse(message.getRoot<wire::HeldJobRecord>());
      rest = kj::arrayPtr(message.getEnd(), rest.end());
      versions.records.add(kj::mv(record));
    });
    if (failure != nullptr) {
      if (versions.records.size() == 0) kj::throwFatalException(kj::mv(KJ_ASSERT_NONNULL(failure)));
      break;
    }
    versions.wholeWords = words.size() - rest.size();
  }
  KJ_REQUIRE(versions.records.size() > 0, "it is empty");
  return versions;
}

// Writes `bytes` as the file `name` of `dirFd`, replacing it whole; synced when `sync`.
void replaceFile(int dirFd, kj::StringPtr name, kj::ArrayPtr<const kj::byte> bytes, bool sync) {
  auto temporary = kj::str(".", name, ".new");
  auto fail = [&](kj::StringPtr step, int error) {
    unlinkat(dirFd, temporary.cStr(), 0);
    KJ_FAIL_REQUIRE(kj::str("cannot ", step, " the record of job ", name, ": ", strerror(error)));
  };
  int fd =
      openat(dirFd, temporary.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) fail("create", errno);
  kj::AutoCloseFd file(fd);
  while (bytes.size() > 0) {
    ssize_t n = ::write(fd, bytes.begin(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write", errno);
    bytes = bytes.slice(n, bytes.size());
  }
  if (sync && fdatasync(fd) < 0) fail("sync", errno);
  if (renameat(dirFd, temporary.cStr(), dirFd, name.cStr()) < 0) fail("replace", errno);
}

// Appends `bytes`, a new version of the record, to the file `name` of `dirFd` (made when
// missing); synced when `sync`. A file past COMPACT_AT is replaced by this version alone instead.
// Appending makes no new file (no inode, no rename) for each version of a job's record; a
// supervisor's crash cannot cut a write short (only the machine's can: load() keeps the last
// whole version).
// `spare`, when given, names an empty file of the directory to take (rename) when the record's
// file is missing, rather than making one: see HeldRecords::spares.
void appendFile(int dirFd, kj::StringPtr name, kj::ArrayPtr<const kj::byte> bytes, bool sync,
                kj::FunctionParam<kj::Maybe<kj::String>()> spare) {
  auto fail = [&](kj::StringPtr step, int error) {
    KJ_FAIL_REQUIRE(kj::str("cannot ", step, " the record of job ", name, ": ", strerror(error)));
  };
  constexpr int FLAGS = O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC;
  int fd = openat(dirFd, name.cStr(), FLAGS);
  bool tookSpare = false;
  if (fd < 0 && errno == ENOENT) {
    KJ_IF_MAYBE (taken, spare()) {
      if (renameat(dirFd, taken->cStr(), dirFd, name.cStr()) == 0) {
        fd = openat(dirFd, name.cStr(), FLAGS);
        tookSpare = fd >= 0;
      }
    }
    if (fd < 0) fd = openat(dirFd, name.cStr(), FLAGS | O_CREAT, 0600);
  }
  if (fd < 0) fail("open", errno);
  kj::AutoCloseFd file(fd);
  struct stat st;
  if (fstat(fd, &st) < 0) fail("stat", errno);
  if (tookSpare && st.st_size != 0) {
    // A spare holds nothing of another job's, whatever wrote to it after it was emptied.
    if (ftruncate(fd, 0) < 0) fail("empty", errno);
    st.st_size = 0;
  }
  if (size_t(st.st_size) + bytes.size() > HeldRecords::COMPACT_AT ||
      st.st_size % sizeof(capnp::word) != 0) {
    file = nullptr;
    replaceFile(dirFd, name, bytes, sync);
    return;
  }
  while (bytes.size() > 0) {
    ssize_t n = ::write(fd, bytes.begin(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write", errno);
    bytes = bytes.slice(n, bytes.size());
  }
  if (sync && fdatasync(fd) < 0) fail("sync", errno);
}

}  // namespace

HeldRecord HeldRecord::clone() const {
  HeldRecord copy;
  copy.jobId = kj::str(jobId);
  copy.executor = kj::str(executor);
  copy.bootId = kj::str(bootId);
  copy.state = state;
  copy.trace = trace.clone();
  copy.end = end;
  return copy;
}

kj::String currentBootId() {
  int fd;
  KJ_SYSCALL(fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC));
  kj::AutoCloseFd file(fd);
  char text[64];
  ssize_t n;
  KJ_SYSCALL(n = read(fd, text, sizeof(text) - 1));
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) --n;
  return kj::heapString(text, n);
}

HeldRecords::HeldRecords(kj::StringPtr dir) : dirPath(kj::str(dir)) {
  auto slash = KJ_REQUIRE_NONNULL(dir.findLast('/'), "not an absolute path", dir);
  auto parentPath = slash == 0 ? kj::str("/") : kj::str(dir.slice(0, slash));
  requireClosedDirectory(openDirectory(parentPath), parentPath);
  if (mkdir(dirPath.cStr(), 0700) < 0 && errno != EEXIST) {
    KJ_FAIL_REQUIRE(kj::str("cannot create ", dirPath, ": ", strerror(errno)));
  }
  dirFd = openDirectory(dirPath);
  requireClosedDirectory(dirFd, dirPath);
  KJ_SYSCALL(fchmod(dirFd, 0700), dirPath);
  thread = executors::startQuietThread([this]() { run(); });
}

HeldRecords::~HeldRecords() noexcept(false) {
  state.lockExclusive()->stopping = true;
  thread = nullptr;  // joins, once the queue is done
}

kj::Array<HeldRecord> HeldRecords::load(kj::FunctionParam<void(kj::StringPtr line)> log) {
  kj::Vector<kj::String> names;
  {
    int fd;
    KJ_SYSCALL(fd = dup(dirFd), dirPath);
    DIR* dir = fdopendir(fd);
    if (dir == nullptr) {
      close(fd);
      KJ_FAIL_SYSCALL("fdopendir", errno, dirPath);
    }
    KJ_DEFER(closedir(dir));
    rewinddir(dir);
    while (struct dirent* entry = readdir(dir)) {
      kj::StringPtr name = entry->d_name;
      if (name == "." || name == "..") continue;
      names.add(kj::str(name));
    }
  }
  kj::Vector<HeldRecord> records;
  for (auto& name : names) {
    if (name.startsWith(".")) {
      // A replacement a supervisor did not get to rename (the record it replaces is whole), or
      // a spare file.
      unlinkat(dirFd, name.cStr(), 0);
      continue;
    }
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   int fd = openat(dirFd, name.cStr(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                   if (fd < 0) KJ_FAIL_REQUIRE(kj::str("cannot open it: ", strerror(errno)));
                   kj::AutoCloseFd file(fd);
                   struct stat st;
                   KJ_SYSCALL(fstat(fd, &st));
                   if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
                       (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
                     KJ_FAIL_REQUIRE("it is not a file of this supervisor's user alone");
                   }
                   if (size_t(st.st_size) > MAX_RECORD_BYTES) {
                     KJ_FAIL_REQUIRE(kj::str("it is not a record (", st.st_size, " bytes)"));
                   }
                   auto words = kj::heapArray<capnp::word>(st.st_size / sizeof(capnp::word));
                   kj::FdInputStream(fd).read(words.begin(), words.asBytes().size());
                   Versions versions;
                   KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                                       [&]() { versions = parseVersions(words); })) {
                     KJ_FAIL_REQUIRE(kj::str("it is not a record (", e->getDescription(), ")"));
                   }
                   for (auto& version : versions.records) {
                     if (version.jobId != name) {
                       KJ_FAIL_REQUIRE(kj::str("it names another job (", version.jobId, ")"));
                     }
                   }
                   auto record = kj::mv(versions.records.back());
                   // The supervisor that wrote this end may have died before syncing it.
                   if (record.state == HeldRecord::State::ENDED) fdatasync(fd);
                   if (versions.wholeWords * sizeof(capnp::word) != size_t(st.st_size)) {
                     // A write the machine cut short: the next one must not follow it.
                     replaceFile(dirFd, name, words.slice(0, versions.wholeWords).asBytes(), true);
                     log(kj::str("the held job record ", dirPath, "/", name,
                                 " ended in a write cut short; its last whole version is kept"));
                   }
                   records.add(kj::mv(record));
                 })) {
      log(kj::str("cannot read the held job record ", dirPath, "/", name,
                  ", left as it is: ", e->getDescription()));
    }
  }
  return records.releaseAsArray();
}

kj::Function<void()> HeldRecords::writing(const HeldRecord& record) {
  auto bytes = serialize(record);
  bool ended = record.state == HeldRecord::State::ENDED;
  return [this, bytes = kj::mv(bytes), ended, name = kj::str(record.jobId)]() mutable {
    append(name, bytes.asBytes());
    if (ended) unsyncedEnds.upsert(kj::mv(name), [](kj::String&, kj::String&&) {});
  };
}

kj::Promise<void> HeldRecords::write(const HeldRecord& record) {
  return queue(writing(record));
}

void HeldRecords::post(const HeldRecord& record) {
  auto lock = state.lockExclusive();
  KJ_REQUIRE(!lock->stopping, "the held job records are closing");
  lock->queue.add(Work{writing(record), kj::Own<kj::CrossThreadPromiseFulfiller<void>>()});
}

kj::Promise<void> HeldRecords::failed() {
  auto lock = state.lockExclusive();
  if (lock->failures.size() > 0) return kj::READY_NOW;
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  lock->failureWaiter = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

kj::Array<kj::String> HeldRecords::takeFailures() {
  auto lock = state.lockExclusive();
  auto lines = lock->failures.releaseAsArray();
  lock->failures = kj::Vector<kj::String>();
  return lines;
}

void HeldRecords::writeHere(const HeldRecord& record) {
  KJ_REQUIRE(record.state != HeldRecord::State::ENDED, "an end is written by the records' thread");
  auto bytes = serialize(record);
  append(record.jobId, bytes.asBytes());
}

void HeldRecords::removeHere(kj::StringPtr jobId) {
  if (unlinkat(dirFd, jobId.cStr(), 0) < 0 && errno != ENOENT) {
    KJ_FAIL_REQUIRE(kj::str("cannot remove the record of job ", jobId, ": ", strerror(errno)));
  }
}

kj::Maybe<kj::String> HeldRecords::takeSpare() {
  auto lock = spares.lockExclusive();
  if (lock->names.size() == 0) return nullptr;
  auto taken = kj::mv(lock->names.back());
  lock->names.removeLast();
  return kj::mv(taken);
}

void HeldRecords::append(kj::StringPtr name, kj::ArrayPtr<const kj::byte> bytes) {
  appendFile(dirFd, name, bytes, false, [this]() { return takeSpare(); });
}

kj::Promise<void> HeldRecords::sync(kj::StringPtr jobId) {
  return queue([this, name = kj::str(jobId)]() {
    if (unsyncedEnds.find(name) == nullptr) return;
    int fd = openat(dirFd, name.cStr(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) {
        unsyncedEnds.eraseMatch(name);
        return;
      }
      KJ_FAIL_REQUIRE(kj::str("cannot open the record of job ", name, ": ", strerror(errno)));
    }
    kj::AutoCloseFd file(fd);
    if (fdatasync(fd) < 0) {
      KJ_FAIL_REQUIRE(kj::str("cannot sync the record of job ", name, ": ", strerror(errno)));
    }
    unsyncedEnds.eraseMatch(name);
  });
}

kj::Promise<void> HeldRecords::remove(kj::StringPtr jobId) {
  return queue([this, name = kj::str(jobId)]() {
    unsyncedEnds.eraseMatch(name);
    kj::Maybe<kj::String> spareName;
    {
      auto lock = spares.lockExclusive();
      if (lock->names.size() < MAX_SPARES) spareName = kj::str(".spare-", lock->next++);
    }
    KJ_IF_MAYBE (spare, spareName) {
      // Kept, emptied, for a later job: making a file costs far more than renaming one where
      // files come and go by the thousand (ext4 looks for a free inode past the recently freed).
      if (renameat(dirFd, name.cStr(), dirFd, spare->cStr()) == 0) {
        int fd = openat(dirFd, spare->cStr(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
          close(fd);
          spares.lockExclusive()->names.add(kj::mv(*spare));
        } else {
          unlinkat(dirFd, spare->cStr(), 0);
        }
        return;
      }
      if (errno == ENOENT) return;
    }
    if (unlinkat(dirFd, name.cStr(), 0) < 0 && errno != ENOENT) {
      KJ_FAIL_REQUIRE(kj::str("cannot remove the record of job ", name, ": ", strerror(errno)));
    }
  });
}

bool HeldRecords::idle() const {
  auto lock = state.lockShared();
  return lock->queue.empty() && !lock->working && lock->unsynced == 0;
}

kj::Promise<void> HeldRecords::queue(kj::Function<void()> func) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto lock = state.lockExclusive();
  KJ_REQUIRE(!lock->stopping, "the held job records are closing");
  lock->queue.add(Work{kj::mv(func), kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

void HeldRecords::run() {
  for (;;) {
    kj::Vector<Work> batch;
    {
      auto lock = state.lockExclusive();
      lock.wait([](const State& s) { return s.stopping || !s.queue.empty(); });
      if (lock->queue.empty()) break;
      batch = kj::mv(lock->queue);
      lock->queue = kj::Vector<Work>();
      lock->working = true;
    }
    auto failures = KJ_MAP(work, batch) {
      return kj::runCatchingExceptions(work.func);
    };
    // Idle (if nothing came meanwhile) before anyone hears that the batch is done.
    {
      auto lock = state.lockExclusive();
      lock->working = false;
      lock->unsynced = unsyncedEnds.size();
    }
    kj::Vector<kj::String> postedFailures;
    for (auto i : kj::indices(batch)) {
      if (batch[i].done.get() == nullptr) {
        KJ_IF_MAYBE (e, failures[i]) {
          postedFailures.add(kj::str(e->getDescription()));
        }
      } else KJ_IF_MAYBE (e, failures[i]) {
        batch[i].done->reject(kj::mv(*e));
      } else {
        batch[i].done->fulfill();
      }
    }
    if (postedFailures.size() > 0) {
      kj::Own<kj::CrossThreadPromiseFulfiller<void>> waiter;
      {
        auto lock = state.lockExclusive();
        for (auto& line : postedFailures) lock->failures.add(kj::mv(line));
        waiter = kj::mv(lock->failureWaiter);
      }
      if (waiter.get() != nullptr) waiter->fulfill();
    }
  }
  // Stopping: what sync() has not got to yet is synced now.
  for (auto& name : unsyncedEnds) {
    int fd = openat(dirFd, name.cStr(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    fdatasync(fd);
    close(fd);
  }
  unsyncedEnds.clear();
}

}  // namespace runner::executor_rpc

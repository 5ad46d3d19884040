#include "runner/output-files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executors/threads.h"
#include "runner/user-error.h"

namespace runner {

namespace {

constexpr char SPARE_PREFIX[] = ".spare-";
constexpr int OUTPUT_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC;
constexpr mode_t OUTPUT_MODE = 0640;

// Whether `name` is "<id>.log" for an id as newJobId() makes them (lower-case 8-4-4-4-12 hex).
bool isOutputName(kj::StringPtr name) {
  if (name.size() != 36 + 4 || !name.endsWith(".log")) return false;
  for (size_t i = 0; i < 36; i++) {
    char c = name[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

OutputFiles::OutputFiles(kj::StringPtr dir, size_t spares) : dir(kj::str(dir)), target(spares) {
  int fd;
  KJ_SYSCALL(fd = open(this->dir.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), this->dir);
  dirFd = kj::AutoCloseFd(fd);
  removeLeftovers();
  thread = executors::startQuietThread([this]() { serve(); });
}

OutputFiles::~OutputFiles() noexcept(false) {
  state.lockExclusive()->stopping = true;
  thread = nullptr;  // joins, once the requests are served
  for (auto& spare : state.lockExclusive()->spares) {
    if (unlinkat(dirFd, spare.cStr(), 0) < 0 && errno != ENOENT) {
      KJ_LOG(WARNING, "could not remove a spare output file", dir, spare, strerror(errno));
    }
  }
}

kj::AutoCloseFd OutputFiles::create(kj::StringPtr id) {
  auto name = kj::str(id, ".log");
  kj::Maybe<kj::String> spare;
  {
    auto lock = state.lockExclusive();
    if (!lock->spares.empty()) {
      spare = kj::mv(lock->spares.back());
      lock->spares.removeLast();
    }
    lock->wanted = true;
  }
  KJ_IF_MAYBE (ready, spare) {
    if (renameat2(dirFd, ready->cStr(), dirFd, name.cStr(), RENAME_NOREPLACE) == 0) {
      int fd = openat(dirFd, name.cStr(), (OUTPUT_FLAGS & ~(O_CREAT | O_EXCL)) | O_NOFOLLOW);
      if (fd >= 0) {
        // Only a file this process made and nobody else can reach: one that was swapped for
        // another (a link, someone else's) could hand the job's output to its owner.
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
            st.st_uid == geteuid() && st.st_size == 0 && (st.st_mode & 022) == 0) {
          return kj::AutoCloseFd(fd);
        }
        close(fd);
        unlinkat(dirFd, name.cStr(), 0);
        KJ_LOG(WARNING, "a spare output file was not what runnerd made; made a new one", dir);
        fd = openat(dirFd, name.cStr(), OUTPUT_FLAGS, OUTPUT_MODE);
        if (fd < 0) failCreate(name, errno);
        return kj::AutoCloseFd(fd);
      }
      int error = errno;
      if (error != ENOENT) {
        // Out of descriptors, say: the job's file must not stay behind under its name.
        unlinkat(dirFd, name.cStr(), 0);
        failCreate(name, error);
      }
      // Gone again already: made directly below.
    } else {
      // Taken already (then the direct creation below says so), or the spare is gone: either
      // way, the job's file is made directly.
      unlinkat(dirFd, ready->cStr(), 0);
    }
  }
  int fd = openat(dirFd, name.cStr(), OUTPUT_FLAGS, OUTPUT_MODE);
  if (fd < 0) failCreate(name, errno);
  return kj::AutoCloseFd(fd);
}

kj::Promise<kj::AutoCloseFd> OutputFiles::createOnThread(kj::StringPtr id) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<kj::AutoCloseFd>();
  state.lockExclusive()->requests.add(Request{kj::str(id), kj::mv(paf.fulfiller), nullptr});
  return kj::mv(paf.promise);
}

void OutputFiles::removeOnThread(kj::StringPtr id) {
  state.lockExclusive()->requests.add(Request{kj::str(id), nullptr, nullptr});
}

kj::Promise<void> OutputFiles::removeOnThreadAndWait(kj::StringPtr id) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  state.lockExclusive()->requests.add(
      Request{kj::str(id), nullptr, nullptr, kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

void OutputFiles::releaseBlocksOnThread(kj::AutoCloseFd fd) {
  state.lockExclusive()->requests.add(Request{kj::str(), nullptr, kj::mv(fd)});
}

void OutputFiles::handle(Request& request) {
  if (request.shrink.get() >= 0) {
    int fd = request.shrink.get();
    struct stat st;
    // Shrinking a file lets go of every block past its new end; a file system may skip a
    // truncation to the size the file has, so it grows by a byte first.
    if (fstat(fd, &st) < 0 || ftruncate(fd, st.st_size + 1) < 0 ||
        ftruncate(fd, st.st_size) < 0) {
      KJ_LOG(WARNING, "could not release the blocks past the end of an output file", dir,
             strerror(errno));
    }
    return;
  }
  KJ_IF_MAYBE (created, request.created) {
    kj::AutoCloseFd fd;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { fd = create(request.id); })) {
      (*created)->reject(kj::mv(*e));
    } else {
      (*created)->fulfill(kj::mv(fd));
    }
  } else {
    auto name = kj::str(request.id, ".log");
    if (unlinkat(dirFd, name.cStr(), 0) < 0 && errno != ENOENT) {
      KJ_LOG(WARNING, "could not remove an output file", dir, name, strerror(errno));
    }
    KJ_IF_MAYBE (removed, request.removed) {
      (*removed)->fulfill();
    }
  }
}

void OutputFiles::failCreate(kj::StringPtr name, int error) {
  // The client reads why; the server's paths are for its log.
  KJ_LOG(ERROR, "cannot create an output file", dir, name, strerror(error));
  if (error == ENOSPC || error == EDQUOT) {
    throwUserError(ErrorKind::UNAVAILABLE,
                   "no room for the job's output: the log directory's file system is full");
  }
  throwUserError(ErrorKind::UNAVAILABLE,
                 kj::str("cannot create the job's output file: ", strerror(error)));
}

size_t OutputFiles::backlog() const {
  return state.lockShared()->requests.size();
}

size_t OutputFiles::ready() const {
  return state.lockShared()->spares.size();
}

void OutputFiles::serve() {
  // No exceptions escape: a failure to make a spare leaves the job's file to be made directly,
  // where it is reported to whoever started the job.
  uint64_t counter = 0;
  pid_t pid = getpid();
  for (;;) {
    kj::Vector<Request> requests;
    {
      auto lock = state.lockExclusive();
      lock.wait([this](const State& state) {
        return state.stopping || !state.requests.empty() ||
               (state.wanted && state.spares.size() < target);
      });
      // Removals asked before the end are still done.
      if (lock->stopping && lock->requests.empty()) return;
      requests = kj::mv(lock->requests);
      lock->requests = kj::Vector<Request>();
    }
    if (!requests.empty()) {
      for (auto& request : requests) handle(request);
      continue;
    }
    auto name = kj::str(SPARE_PREFIX, pid, '-', counter++);
    // Made without being opened: a spare holds no descriptor of runnerd's.
    if (mknodat(dirFd, name.cStr(), S_IFREG | OUTPUT_MODE, 0) < 0) {
      if (errno != EEXIST) state.lockExclusive()->wanted = false;
      continue;
    }
    state.lockExclusive()->spares.add(kj::mv(name));
  }
}

kj::Array<kj::String> OutputFiles::removeUnknown(
    kj::FunctionParam<bool(kj::StringPtr id)> isKnown) {
  kj::Vector<kj::String> removed;
  int fd;
  KJ_SYSCALL(fd = dup(dirFd));
  DIR* entries = fdopendir(fd);
  if (entries == nullptr) {
    close(fd);
    KJ_FAIL_SYSCALL("fdopendir", errno, dir);
  }
  KJ_DEFER(closedir(entries));
  // The copy shares its offset with dirFd, which an earlier listing left at the end.
  rewinddir(entries);
  while (struct dirent* entry = readdir(entries)) {
    kj::StringPtr name = entry->d_name;
    if (!isOutputName(name)) continue;
    auto id = kj::str(name.slice(0, 36));
    if (isKnown(id)) continue;
    struct stat st;
    if (fstatat(dirFd, name.cStr(), &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) continue;
    if (unlinkat(dirFd, name.cStr(), 0) < 0) {
      if (errno != ENOENT) KJ_LOG(WARNING, "cannot remove an unknown output file", dir, name);
      continue;
    }
    removed.add(kj::mv(id));
  }
  return removed.releaseAsArray();
}

void OutputFiles::removeLeftovers() {
  int fd;
  KJ_SYSCALL(fd = dup(dirFd));
  DIR* entries = fdopendir(fd);
  if (entries == nullptr) {
    close(fd);
    KJ_FAIL_SYSCALL("fdopendir", errno, dir);
  }
  KJ_DEFER(closedir(entries));
  while (struct dirent* entry = readdir(entries)) {
    if (strncmp(entry->d_name, SPARE_PREFIX, strlen(SPARE_PREFIX)) != 0) continue;
    if (unlinkat(dirFd, entry->d_name, 0) < 0 && errno != ENOENT) {
      KJ_FAIL_SYSCALL("unlink", errno, kj::str(dir, '/', entry->d_name));
    }
  }
}

}  // namespace runner

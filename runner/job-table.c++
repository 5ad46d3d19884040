#include "runner/job-table.h"

#include <algorithm>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <kj/debug.h>
#include <kj/encoding.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "executors/spawn.h"
#include "runner/printable.h"
#include "runner/store-writer.h"
#include "runner/store.h"
#include "runner/user-error.h"

namespace runner {

namespace {

constexpr kj::StringPtr DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"_kj;

void requireNoNul(kj::StringPtr text, kj::StringPtr what) {
  if (strlen(text.cStr()) != text.size()) {
    throwUserError(ErrorKind::INVALID, kj::str("the job's ", what, " contains a NUL byte"));
  }
}

// The output file of a job whose start has not completed yet: removed with this object (on the
// output files' thread, after its creation) unless kept, so that a job that never starts leaves
// nothing behind.
class UnstartedOutput {
 public:
  UnstartedOutput(OutputFiles& files, kj::StringPtr id, kj::String path)
      : path(kj::mv(path)), files(files), id(kj::str(id)) {}
  ~UnstartedOutput() {
    if (!kept) files.removeOnThread(id);
  }
  KJ_DISALLOW_COPY(UnstartedOutput);

  void keep() { kept = true; }

  const kj::String path;

 private:
  OutputFiles& files;
  kj::String id;
  bool kept = false;
};

kj::ArrayPtr<const char> envName(kj::StringPtr entry) {
  KJ_IF_MAYBE (eq, entry.findFirst('=')) {
    return entry.slice(0, *eq);
  }
  return entry;
}

}  // namespace

kj::String newJobId() {
  kj::byte bytes[16];
  KJ_ASSERT(getrandom(bytes, sizeof(bytes), 0) == sizeof(bytes));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;  // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80;  // RFC 4122 variant
  auto hex = kj::encodeHex(bytes);
  return kj::str(hex.slice(0, 8), '-', hex.slice(8, 12), '-', hex.slice(12, 16), '-',
                 hex.slice(16, 20), '-', hex.slice(20, 32));
}

// ---------------------------------------------------------------------------------------------
// Job

Job::Job(JobContext& context, JobRecord record, kj::String path)
    : context(context), rec(kj::mv(record)), path(kj::mv(path)) {}

kj::Array<OutputSample> Job::outputTimes() {
  if (hasEnded()) {
    if (rec.outputTimes.size() == 0 && rec.endedAt != 0) {
      uint64_t bytes = outputBytes();
      if (bytes > 0) return kj::heapArray<OutputSample>({OutputSample{bytes, rec.endedAt}});
    }
    return kj::heapArray(rec.outputTimes.asPtr());
  }
  // What arrived since the last change was noted (or whose note is still on its way) counts.
  struct stat st;
  if (output.get() >= 0 && fstat(output.get(), &st) == 0) times.observe(st.st_size, nowMillis());
  return kj::heapArray(times.samples());
}

uint64_t Job::outputBytes() const {
  struct stat st;
  if (output.get() >= 0) {
    // Running: the size now, from the open file (no path lookup).
    KJ_SYSCALL(fstat(output.get(), &st), rec.id);
    return st.st_size;
  }
  if (rec.outputBytes != JobRecord::UNKNOWN_OUTPUT_BYTES) return rec.outputBytes;
  // Ended before runnerd recorded output sizes.
  if (stat(path.cStr(), &st) < 0) return 0;
  return st.st_size;
}

void Job::releaseBlocksPastEnd() {
  struct stat st;
  if (output.get() < 0 || fstat(output.get(), &st) < 0) return;
  // A file system allocates a little past the end as it goes; more than this was asked for
  // (fallocate with FALLOC_FL_KEEP_SIZE on the job's stdout).
  constexpr uint64_t SLACK = 1 << 20;
  if (uint64_t(st.st_blocks) * 512 <= uint64_t(st.st_size) + SLACK) return;
  // Truncating waits for the disk: on the output files' thread.
  int copy = dup(output.get());
  if (copy < 0) {
    context.log("cannot release the blocks job ", rec.id, " allocated past its output: ",
              strerror(errno));
    return;
  }
  context.outputFiles.releaseBlocksOnThread(kj::AutoCloseFd(copy));
}

kj::Promise<void> Job::enforceOutputLimit() {
  // Waits first, then reads: a write after the read resolves the wait.
  auto changed = outputChanged();
  if (hasEnded()) return kj::READY_NOW;
  // What the file holds on disk counts too: fallocate(FALLOC_FL_KEEP_SIZE) on the job's stdout
  // takes blocks without changing the size.
  struct stat st;
  KJ_SYSCALL(fstat(output.get(), &st), rec.id);
  times.observe(st.st_size, nowMillis());
  uint64_t size = kj::max(uint64_t(st.st_size), uint64_t(st.st_blocks) * 512);
  if (size < rec.maxOutputBytes) {
    return changed.then([this]() { return enforceOutputLimit(); });
  }
  rec.error = kj::str("runnerd stopped the job: its output reached the limit of ",
                      rec.maxOutputBytes, " bytes");
  if (rec.endReason == EndReason::NONE) rec.endReason = EndReason::OUTPUT_LIMIT;
  context.log("job reached its output limit id=", rec.id, " owner=", rec.owner,
            " limit=", rec.maxOutputBytes, " bytes=", size);
  // At once: a job that writes fast would write far past the limit during a grace period.
  stop(0 * kj::SECONDS).detach([](kj::Exception&&) {});
  return kj::READY_NOW;
}

kj::Promise<void> Job::whenEnded() {
  if (hasEnded()) return kj::READY_NOW;
  if (endStalled) return storeNotAnswering();
  return ended.next();
}

void Job::release() {
  if (--holders == 0 && removed) context.released(*this);
}

kj::Exception Job::removedError() const {
  return userError(ErrorKind::CONFLICT, kj::str("job ", rec.id, " was removed"));
}

kj::Promise<void> Job::whenRemoved() {
  if (removed) return removedError();
  return removal.next().then([this]() -> kj::Promise<void> { return removedError(); });
}

kj::Promise<void> Job::outputChanged() {
  KJ_IF_MAYBE (w, watch) {
    return (*w)->nextChange();
  }
  // Ended: nothing will change any more.
  return kj::READY_NOW;
}

kj::Promise<void> Job::outputGathered(kj::Duration delay) {
  KJ_IF_MAYBE (w, watch) {
    if (output.get() < 0) return kj::READY_NOW;
    // The output limit is checked at each change, so a pause comes only while the job is far
    // below it (as enforceOutputLimit() counts): no writer fills GATHER_LIMIT_MARGIN in a pause.
    struct stat st;
    KJ_SYSCALL(fstat(output.get(), &st), rec.id);
    uint64_t size = kj::max(uint64_t(st.st_size), uint64_t(st.st_blocks) * 512);
    if (size >= rec.maxOutputBytes || rec.maxOutputBytes - size < GATHER_LIMIT_MARGIN) {
      return kj::READY_NOW;
    }
    // Watching again, which wakes the waiters, comes before the caller's next step.
    return context.timer.afterDelay(delay).then(
        [paused = (*w)->pause(output.get())]() mutable { paused = nullptr; });
  }
  // Ended: nothing will change any more.
  return kj::READY_NOW;
}

kj::Promise<void> Job::stop(kj::Maybe<kj::Duration> grace) {
  if (process != nullptr && rec.endReason == EndReason::NONE) rec.endReason = EndReason::STOPPED;
  KJ_IF_MAYBE (p, process) {
    auto& proc = **p;
    auto delay = grace.orDefault(context.config.defaultGrace);
    if (!stopRequested) {
      stopRequested = true;
      context.log("job stopping id=", rec.id, " owner=", rec.owner, " grace=", delay);
    }
    proc.signalAll(delay == 0 * kj::SECONDS ? SIGKILL : SIGTERM);
    auto deadline = context.timer.now() + delay;
    bool earlier = true;
    KJ_IF_MAYBE (current, killDeadline) {
      earlier = deadline < *current;
    }
    if (delay > 0 * kj::SECONDS && earlier) {
      killDeadline = deadline;
      killTimer = context.timer.atTime(deadline)
                      .then([this]() {
                        KJ_IF_MAYBE (still, process) {
                          context.log("job did not end within its grace period, killing id=", rec.id);
                          (*still)->signalAll(SIGKILL);
                        }
                      })
                      .eagerlyEvaluate(nullptr);
    }
  }
  return whenEnded();
}

bool Job::signal(int number) {
  KJ_IF_MAYBE (p, process) {
    context.log("job signalled id=", rec.id, " owner=", rec.owner, " signal=", number);
    (*p)->signalAll(number);
    return true;
  }
  return false;
}

kj::Promise<executors::Usage> Job::usageSoFar() {
  KJ_IF_MAYBE (p, process) {
    // A status must not wait on a supervisor that does not answer: past the deadline the usage
    // so far is unknown (0), as it is when the supervisor is gone.
    return (*p)->usageSoFar().exclusiveJoin(
        context.timer.afterDelay(USAGE_DEADLINE).then([]() { return executors::Usage(); }));
  }
  return rec.usage;
}

namespace {

// Milliseconds, as a short duration for the log and error texts: "90s", "1500ms".
kj::String shortDuration(uint64_t millis) {
  if (millis % 1000 == 0) return kj::str(millis / 1000, "s");
  return kj::str(millis, "ms");
}

}  // namespace

void Job::armTimeouts() {
  if (rec.timeoutMillis > 0) {
    int64_t left = rec.startedAt + int64_t(rec.timeoutMillis) - nowMillis();
    timeoutTimer = context.timer.afterDelay(kj::max(left, int64_t(0)) * kj::MILLISECONDS)
                       .then([this]() {
                         timedOut(EndReason::TIMEOUT, kj::str("it ran longer than its timeout of ",
                                                              shortDuration(rec.timeoutMillis)));
                       })
                       .eagerlyEvaluate(nullptr);
  }
  if (rec.idleTimeoutMillis > 0) idleTimer = watchIdle().eagerlyEvaluate(nullptr);
}

kj::Promise<void> Job::watchIdle() {
  if (process == nullptr) return kj::READY_NOW;
  // The output file's modification time is when the job last wrote (runnerd never writes it),
  // also across a restart of runnerd; one fstat per idle period, no watch of every write.
  struct stat st;
  int64_t lastWrite = rec.startedAt;
  if (output.get() >= 0 && fstat(output.get(), &st) == 0) {
    lastWrite =
        kj::max(lastWrite, int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000);
  }
  int64_t left = lastWrite + int64_t(rec.idleTimeoutMillis) - nowMillis();
  if (left <= 0) {
    timedOut(EndReason::IDLE_TIMEOUT,
             kj::str("it wrote no output for ", shortDuration(rec.idleTimeoutMillis)));
    return kj::READY_NOW;
  }
  // The file's time is coarser than the clock: a look a little early is followed by another.
  return context.timer.afterDelay(left * kj::MILLISECONDS).then([this]() { return watchIdle(); });
}

void Job::timedOut(EndReason reason, kj::String why) {
  if (process == nullptr || rec.endReason != EndReason::NONE) return;
  rec.endReason = reason;
  rec.error = kj::str("runnerd stopped the job: ", why);
  context.log("job timed out id=", rec.id, " owner=", rec.owner, " reason=", endReasonName(reason));
  stop(nullptr).detach([](kj::Exception&&) {});
}

void Job::finish(const executors::ExitStatus& status) {
  // The end, as it will be stored and then published: until it is on disk, nobody is told.
  JobRecord end = rec.clone();
  end.endedAt = nowMillis();
  end.exitCode = status.signaled ? 0 : status.exitCode;
  end.termSignal = status.signaled ? status.termSignal : 0;
  end.oomKilled = status.oomKilled;
  end.oomKilledMain = status.oomKilledMain;
  end.usage = status.usage;
  if (status.lost.size() > 0) {
    end.state = JobState::LOST;
    end.exitCode = 0;
    end.termSignal = 0;
    end.oomKilled = false;
    end.oomKilledMain = false;
    end.error = kj::str(status.lost);
  } else if (stopRequested) {
    end.state = JobState::STOPPED;
  } else if (status.signaled) {
    end.state = JobState::KILLED;
  } else {
    end.state = JobState::EXITED;
  }
  if (end.state != JobState::STOPPED) end.endReason = EndReason::NONE;
  end.usage.currentMemoryBytes = 0;
  end.pid = 0;
  end.pidStartTime = 0;
  end.outputBytes = outputBytes();
  times.observe(end.outputBytes, end.endedAt);
  end.outputTimes = kj::heapArray(times.samples());
  releaseBlocksPastEnd();
  if (end.error.size() == 0 && context.logFilesystemFull()) {
    // The job's writes past that point failed (ENOSPC), which only the job saw.
    end.error = kj::str("the log file system was full when the job ended: its output may be cut "
                        "short");
  }
  // Reaped: a stop from now on only waits for the end to be published. The Process itself is
  // kept until the end is on disk: dropping it tells its executor the end has been taken.
  kj::Maybe<kj::Own<executors::Process>> reaped = kj::mv(process);
  process = nullptr;
  killTimer = nullptr;
  timeoutTimer = nullptr;
  idleTimer = nullptr;

  auto how = status.lost.size() > 0 ? kj::str("lost: ", status.lost)
             : status.signaled        ? kj::str("signal=", status.termSignal)
                                      : kj::str("exit=", status.exitCode);
  context.log("job ended id=", rec.id, " owner=", rec.owner, " state=", stateName(end.state), " ",
            how, status.oomKilled ? " oom-killed" : "");

  // Waiters are told when the store is not answering; the end is still published once the write
  // completes.
  endDeadline = context.timer.afterDelay(STORE_DEADLINE)
                    .then([this]() {
                      context.log("the end of job ", rec.id, " is not on disk after ",
                                STORE_DEADLINE / kj::SECONDS,
                                " s: the state store is not answering");
                      endStalled = true;
                      ended.fail(storeNotAnswering());
                    })
                    .eagerlyEvaluate(nullptr);
  // The table outlives its tasks, and a job that has not ended is never forgotten.
  context.tasks.add(context.writer.update(end.clone())
                      .then([]() {},
                            [this](kj::Exception&& e) {
                              // Published all the same (the job has ended); a restarted server
                              // will report it lost.
                              context.log("cannot record the end of job ", rec.id, ": ",
                                        e.getDescription());
                            })
                      .then([this, end = kj::mv(end)]() mutable {
                        // The table's index points into rec.id: that string stays.
                        end.id = kj::mv(rec.id);
                        rec = kj::mv(end);
                        markEnded();
                      })
                      .attach(kj::mv(reaped)));
}

void Job::markEnded() {
  // The process has been reaped; its descriptors (pidfd, cgroup) go now, not with the table.
  process = nullptr;
  endDeadline = nullptr;
  endStalled = false;
  killTimer = nullptr;
  timeoutTimer = nullptr;
  idleTimer = nullptr;
  outputLimit = nullptr;
  output = nullptr;
  runningSlot = nullptr;
  // Its times are in rec now.
  times = OutputTimes();
  KJ_IF_MAYBE (w, watch) {
    (*w)->wakeAll();
  }
  watch = nullptr;
  ended.fire();
  context.ended(*this);
}

// ---------------------------------------------------------------------------------------------
// JobTable

JobTable::JobTable(JobTableConfig config, executors::ExecutorSet& executors, Store& store,
                   kj::Timer& timer, OutputWatcher& watcher, EventLog& log)
    : cfg(kj::mv(config)),
      outputFiles(cfg.logDir),
      executors(executors),
      store(store),
      writer(kj::heap<StoreWriter>(store)),
      timer(timer),
      watcher(watcher),
      log(log),
      errorHandler(log, "internal error"),
      tasks(errorHandler),
      jobContext{cfg,
                 timer,
                 *writer,
                 outputFiles,
                 tasks,
                 log,
                 [this](Job& job) { ended(job); },
                 [this]() { return logFilesystemFull(); },
                 [this](Job& job) { removedHeld.erase(job.seq); },
                 jobMetrics} {
  // Every executor shows in the metrics, with no jobs yet.
  for (auto name : executors.names()) {
    jobMetrics.count(name, JobState::RUNNING, 0);
    jobMetrics.starts.findOrCreate(name, [&]() {
      return kj::HashMap<kj::String, uint64_t>::Entry{kj::str(name), 0};
    });
  }
  KJ_REQUIRE(cfg.identities.get() != nullptr, "no owner identities configured");
  KJ_REQUIRE(executors.find(cfg.defaultExecutor) != nullptr, "unknown executor",
             cfg.defaultExecutor);
}

JobTable::~JobTable() noexcept(false) {}

namespace {

// One running (or starting) job in its owner's count.
class RunningSlot {
 public:
  RunningSlot(kj::HashMap<kj::String, uint32_t>& running, kj::StringPtr owner)
      : running(running), owner(kj::str(owner)) {}
  ~RunningSlot() noexcept(false) {
    KJ_IF_MAYBE (count, running.find(owner)) {
      if (--*count == 0) running.erase(owner);
    }
  }
  KJ_DISALLOW_COPY(RunningSlot);

 private:
  kj::HashMap<kj::String, uint32_t>& running;
  kj::String owner;
};

}  // namespace

bool JobTable::logFilesystemFull() const {
  struct statvfs st;
  if (statvfs(cfg.logDir.cStr(), &st) < 0) return false;
  return uint64_t(st.f_bavail) * st.f_frsize < LOG_ROOM_BYTES || (st.f_files > 0 && st.f_favail == 0);
}

kj::Own<void> JobTable::takeRunningSlot(kj::StringPtr owner, bool overLimit) {
  auto& count = running.findOrCreate(owner, [&]() {
    return kj::HashMap<kj::String, uint32_t>::Entry{kj::str(owner), 0};
  });
  if (count >= cfg.maxRunningPerUser && !overLimit) {
    throwUserError(ErrorKind::LIMIT,
                   kj::str("too many running jobs for ", owner, " (limit ", cfg.maxRunningPerUser,
                           "); wait for some to end or stop them"));
  }
  ++count;
  return kj::heap<RunningSlot>(running, owner);
}

namespace {
size_t estimatedInfoBytes(const JobRecord& rec);

// What an ended job's record holds in memory, for the bounds of stored records: its JobInfo
// and the times of its output.
size_t storedBytesOf(const JobRecord& rec) {
  return estimatedInfoBytes(rec) + rec.outputTimes.size() * sizeof(OutputSample);
}
}  // namespace

// A name taken for a start under way (see `names`): given back when the start fails, kept once
// the job is in the table.
class JobTable::NameClaim {
 public:
  NameClaim(JobTable& table, kj::StringPtr owner, kj::StringPtr name)
      : table(table), owner(kj::str(owner)), name(kj::str(name)) {
    auto& owned = table.names.findOrCreate(owner, [&]() {
      return kj::HashMap<kj::String, kj::HashMap<kj::String, Job*>>::Entry{kj::str(owner), {}};
    });
    KJ_IF_MAYBE (holder, owned.find(name)) {
      if (*holder == nullptr) {
        throwUserError(ErrorKind::CONFLICT,
                       kj::str("the name ", name, " is in use by a job being started"));
      }
      throwUserError(ErrorKind::CONFLICT,
                     kj::str("the name ", name, " is in use by job ", (*holder)->id(),
                             " (remove it first, or choose another)"));
    }
    owned.insert(kj::str(name), nullptr);
  }

  ~NameClaim() noexcept(false) {
    if (kept) return;
    KJ_IF_MAYBE (owned, table.names.find(owner)) {
      owned->erase(name);
      if (owned->size() == 0) table.names.erase(owner);
    }
  }
  KJ_DISALLOW_COPY(NameClaim);

  // The job of this name is in the table (add() put it in the claim's place).
  void keep() { kept = true; }

 private:
  JobTable& table;
  kj::String owner;
  kj::String name;
  bool kept = false;
};

Job& JobTable::add(JobRecord record) {
  auto path = kj::str(cfg.logDir, '/', record.id, ".log");
  auto job = kj::heap<Job>(jobContext, kj::mv(record), kj::mv(path));
  auto& ref = *job;
  ref.seq = nextSeq++;
  ref.storedBytes = storedBytesOf(ref.rec);
  order.add(&ref);
  jobMetrics.count(ref.rec.executor, ref.rec.state, 1);
  auto& owner = byOwner.findOrCreate(ref.rec.owner, [&]() {
    return kj::HashMap<kj::String, OwnerJobs>::Entry{kj::str(ref.rec.owner), OwnerJobs()};
  });
  owner.jobs.add(&ref);
  if (ref.hasEnded()) {
    ++owner.ended;
    owner.storedBytes += ref.storedBytes;
    storedBytes += ref.storedBytes;
  }
  byId.insert(ref.rec.id, &ref);
  if (ref.rec.name.size() > 0) {
    auto& owned = names.findOrCreate(ref.rec.owner, [&]() {
      return kj::HashMap<kj::String, kj::HashMap<kj::String, Job*>>::Entry{kj::str(ref.rec.owner),
                                                                            {}};
    });
    // Over a start's claim of the name (NameClaim).
    owned.upsert(kj::str(ref.rec.name), &ref, [](Job*& existing, Job* job) { existing = job; });
  }
  jobs.insert(ref.rec.id, kj::mv(job));
  return ref;
}

void JobTable::ended(Job& job) {
  jobMetrics.count(job.rec.executor, JobState::RUNNING, -1);
  jobMetrics.count(job.rec.executor, job.rec.state, 1);
  ++jobMetrics.ends[static_cast<uint>(endCauseOf(job.rec))];
  // With the times of its output, which it holds from now on.
  job.storedBytes = storedBytesOf(job.rec);
  KJ_IF_MAYBE (owner, byOwner.find(job.rec.owner)) {
    ++owner->ended;
    owner->storedBytes += job.storedBytes;
    storedBytes += job.storedBytes;
  }
  // Later, not from within the job's own end: the job itself may be the one to forget.
  tasks.add(kj::evalLater([this, owner = kj::str(job.rec.owner)]() {
    forgetPastRetention(owner);
    forgetPastTotal();
  }));
  if (cfg.retainJobs > 0) requestSweep();
}

// Jobs forgotten in one turn of the event loop at most.
constexpr size_t FORGET_PER_TURN = 64;

void JobTable::forgetPastRetention(kj::StringPtr name) {
  auto over = [&](const OwnerJobs& owner) {
    return owner.ended > cfg.maxStoredPerUser || owner.storedBytes > cfg.maxStoredBytesPerUser;
  };
  KJ_IF_MAYBE (owner, byOwner.find(name)) {
    if (!over(*owner)) return;
    // Oldest first. A running job or one a client holds stays; so the scan is bounded, and what
    // it could not forget now is forgotten at a later end.
    kj::Vector<Job*> victims;
    uint32_t ended = owner->ended;
    uint64_t bytes = owner->storedBytes;
    // At most FORGET_PER_TURN at a time, the rest in later turns, so that others are served
    // meanwhile. Held jobs are skipped, however many (a client's capabilities are bounded).
    bool more = false;
    for (auto job : owner->jobs) {
      if (!(ended > cfg.maxStoredPerUser || bytes > cfg.maxStoredBytesPerUser)) break;
      if (!job->hasEnded() || job->holders > 0) continue;
      if (victims.size() == FORGET_PER_TURN) {
        more = true;
        break;
      }
      victims.add(job);
      --ended;
      bytes -= job->storedBytes;
    }
    for (auto job : victims) forget(*job);
    if (more) {
      tasks.add(kj::evalLater([this, owner = kj::str(name)]() { forgetPastRetention(owner); }));
    }
  }
}

void JobTable::forgetPastTotal() {
  if (storedBytes <= cfg.maxStoredBytes) return;
  OwnerJobs* biggest = nullptr;
  for (auto& entry : byOwner) {
    if (biggest == nullptr || entry.value.storedBytes > biggest->storedBytes) {
      biggest = &entry.value;
    }
  }
  if (biggest == nullptr) return;
  kj::Vector<Job*> victims;
  uint64_t total = storedBytes;
  bool more = false;
  for (auto job : biggest->jobs) {
    if (total <= cfg.maxStoredBytes) break;
    if (!job->hasEnded() || job->holders > 0) continue;
    if (victims.size() == FORGET_PER_TURN) {
      more = true;
      break;
    }
    victims.add(job);
    total -= job->storedBytes;
  }
  for (auto job : victims) forget(*job);
  // Another owner may be the biggest now; one with nothing to forget ends the round (what it
  // holds is forgotten at a later end).
  if (more || (victims.size() > 0 && storedBytes > cfg.maxStoredBytes)) {
    tasks.add(kj::evalLater([this]() { forgetPastTotal(); }));
  }
}

void JobTable::forget(Job& job) {
  // Both on threads of their own: a record that cannot be removed comes back at a restart.
  tasks.add(writer->forget(kj::str(job.rec.id))
                .catch_([this, id = kj::str(job.rec.id)](kj::Exception&& e) {
                  log("cannot forget job ", id, ": ", e.getDescription());
                }));
  outputFiles.removeOnThread(job.rec.id);
  log("job forgotten id=", job.rec.id, " owner=", job.rec.owner,
      ": past its owner's retention of ended jobs");
  detach(job);
}

kj::Own<Job> JobTable::detach(Job& job) {
  auto bySeq = [](Job* a, uint64_t seq) { return a->seq < seq; };
  KJ_IF_MAYBE (owner, byOwner.find(job.rec.owner)) {
    auto& list = owner->jobs;
    auto at = std::lower_bound(list.begin(), list.end(), job.seq, bySeq);
    KJ_ASSERT(at != list.end() && *at == &job);
    // Shift the rest down one (kj::Vector has no erase).
    for (auto p = at; p + 1 < list.end(); ++p) *p = *(p + 1);
    list.removeLast();
    --owner->ended;
    owner->storedBytes -= job.storedBytes;
    storedBytes -= job.storedBytes;
    if (list.empty()) byOwner.erase(job.rec.owner);
  }
  auto at = std::lower_bound(order.begin(), order.end(), job.seq, bySeq);
  KJ_ASSERT(at != order.end() && *at == &job);
  for (auto p = at; p + 1 < order.end(); ++p) *p = *(p + 1);
  order.removeLast();
  jobMetrics.count(job.rec.executor, job.rec.state, -1);
  byId.erase(job.rec.id);
  if (job.rec.name.size() > 0) {
    KJ_IF_MAYBE (owned, names.find(job.rec.owner)) {
      KJ_IF_MAYBE (entry, owned->findEntry(job.rec.name)) {
        if (entry->value == &job) owned->erase(*entry);
      }
      if (owned->size() == 0) names.erase(job.rec.owner);
    }
  }
  // The key is the job's own id, which lives as long as the job: the job leaves the map first.
  auto& entry = KJ_ASSERT_NONNULL(jobs.findEntry(job.rec.id));
  auto own = kj::mv(entry.value);
  jobs.erase(entry);
  return own;
}

kj::Promise<uint64_t> JobTable::remove(Job& job, kj::StringPtr by) {
  KJ_ASSERT(job.hasEnded() && !job.removed, job.rec.id);
  auto id = kj::str(job.rec.id);
  uint64_t bytes = job.outputBytes();
  log("job removed id=", id, " owner=", job.rec.owner, " ", by);
  job.removed = true;
  auto own = detach(job);
  // Its watches and its holders learn it now; a held job stays until its last holder lets go.
  job.removal.fire();
  if (job.holders > 0) removedHeld.insert(job.seq, kj::mv(own));
  own = nullptr;

  // The record first: once it is gone, a restarted runnerd no longer knows the job either, and
  // an output file without a record is removed at its start.
  auto done =
      writer->forget(kj::str(id))
          .then([this, id = kj::str(id)]() { return outputFiles.removeOnThreadAndWait(id); },
                [this, id = kj::str(id)](kj::Exception&& e) -> kj::Promise<void> {
                  log("cannot remove the record of job ", id, ": ", e.getDescription());
                  return userError(ErrorKind::UNAVAILABLE,
                                   kj::str("the state store could not remove job ", id,
                                           "; it comes back when runnerd restarts"));
                })
          .fork();
  // Carried through whether or not anyone waits.
  tasks.add(done.addBranch().catch_([](kj::Exception&&) {}));
  return withStoreDeadline(timer, done.addBranch()).then([bytes]() { return bytes; });
}

kj::Promise<PruneResult> JobTable::prune(kj::Maybe<kj::StringPtr> owner, int64_t endedBy) {
  return pruneFrom(owner.map([](kj::StringPtr name) { return kj::str(name); }), endedBy, 0,
                   PruneResult());
}

kj::Promise<PruneResult> JobTable::pruneFrom(kj::Maybe<kj::String> owner, int64_t endedBy,
                                             uint64_t fromSeq, PruneResult sofar) {
  kj::ArrayPtr<Job* const> candidates = order;
  KJ_IF_MAYBE (name, owner) {
    KJ_IF_MAYBE (own, byOwner.find(*name)) {
      candidates = own->jobs;
    } else {
      candidates = nullptr;
    }
  }
  // By sequence number, not position: jobs come and go between batches.
  auto at = std::lower_bound(candidates.begin(), candidates.end(), fromSeq,
                             [](Job* job, uint64_t seq) { return job->seq < seq; });
  kj::Vector<Job*> victims;
  for (size_t scanned = 0;
       at != candidates.end() && scanned < REMOVE_SCAN_PER_TURN && victims.size() < REMOVE_PER_TURN;
       ++at, ++scanned) {
    auto job = *at;
    if (job->hasEnded() && job->rec.endedAt <= endedBy) victims.add(job);
  }
  kj::Maybe<uint64_t> next;
  if (at != candidates.end()) next = (*at)->seq;

  auto by = owner.map([](kj::StringPtr name) { return kj::str("by a prune of ", name); })
                .orDefault(kj::str("by a prune of all users"));
  kj::Vector<kj::Promise<uint64_t>> removals;
  for (auto job : victims) removals.add(remove(*job, by));
  sofar.removed += victims.size();
  // The next batch once this one is on disk: a prune of many jobs keeps the store's queue short.
  return kj::joinPromises(removals.releaseAsArray())
      .then([this, owner = kj::mv(owner), endedBy, next,
             sofar](kj::Array<uint64_t> bytes) mutable -> kj::Promise<PruneResult> {
        for (auto b : bytes) sofar.bytes += b;
        KJ_IF_MAYBE (n, next) {
          return kj::evalLater([this, owner = kj::mv(owner), endedBy, n = *n, sofar]() mutable {
            return pruneFrom(kj::mv(owner), endedBy, n, sofar);
          });
        }
        return sofar;
      });
}

void JobTable::startRetention() {
  if (cfg.retainFor == nullptr && cfg.retainJobs == 0) return;
  // Ends are looked for a few times within --retain-for, and at least once a minute. Without it,
  // every job's end starts a sweep, and the timer only catches jobs a client held then.
  auto period = 5 * kj::SECONDS;
  KJ_IF_MAYBE (retain, cfg.retainFor) {
    period = kj::max(kj::min(*retain / 4, 60 * kj::SECONDS), 1 * kj::SECONDS);
  }
  retentionTimer = retentionTicks(period).eagerlyEvaluate([this](kj::Exception&& e) {
    log("the retention of ended jobs stopped: ", e.getDescription());
  });
  requestSweep();
}

kj::Promise<void> JobTable::retentionTicks(kj::Duration period) {
  return timer.afterDelay(period).then([this, period]() {
    requestSweep();
    return retentionTicks(period);
  });
}

void JobTable::requestSweep() {
  if (sweeping) {
    sweepAgain = true;
    return;
  }
  uint64_t endedJobs = 0;
  for (auto& entry : byOwner) endedJobs += entry.value.ended;
  uint64_t excess =
      cfg.retainJobs > 0 && endedJobs > cfg.retainJobs ? endedJobs - cfg.retainJobs : 0;
  if (excess == 0 && cfg.retainFor == nullptr) return;
  sweeping = true;
  tasks.add(kj::evalLater([this, excess]() { return sweepFrom(0, excess); })
                .then(
                    [this]() {
                      sweeping = false;
                      if (sweepAgain) {
                        sweepAgain = false;
                        requestSweep();
                      }
                    },
                    [this](kj::Exception&& e) {
                      // Tried again at the next tick.
                      sweeping = false;
                      sweepAgain = false;
                      log("the retention of ended jobs could not remove a job: ",
                          e.getDescription());
                    }));
}

kj::Promise<void> JobTable::sweepFrom(uint64_t fromSeq, uint64_t excess) {
  int64_t endedBy = kj::minValue;
  KJ_IF_MAYBE (retain, cfg.retainFor) {
    endedBy = nowMillis() - int64_t(*retain / kj::MILLISECONDS);
  }
  auto at = std::lower_bound(order.begin(), order.end(), fromSeq,
                             [](Job* job, uint64_t seq) { return job->seq < seq; });
  // Oldest first. A job a client holds stays (it may be reading the job's end right now).
  kj::Vector<Job*> victims;
  kj::Vector<bool> overCount;
  for (size_t scanned = 0;
       at != order.end() && scanned < REMOVE_SCAN_PER_TURN && victims.size() < REMOVE_PER_TURN;
       ++at, ++scanned) {
    auto job = *at;
    if (!job->hasEnded() || job->holders > 0) continue;
    if (excess > 0) {
      --excess;
      victims.add(job);
      overCount.add(true);
    } else if (job->rec.endedAt <= endedBy) {
      victims.add(job);
      overCount.add(false);
    }
  }
  kj::Maybe<uint64_t> next;
  if (at != order.end()) next = (*at)->seq;
  kj::Vector<kj::Promise<uint64_t>> removals;
  for (auto i : kj::indices(victims)) {
    removals.add(remove(*victims[i], overCount[i] ? "by --retain-jobs"_kj : "by --retain-for"_kj));
  }
  return kj::joinPromises(removals.releaseAsArray())
      .then([this, next, excess](kj::Array<uint64_t>) -> kj::Promise<void> {
        KJ_IF_MAYBE (n, next) {
          return kj::evalLater([this, n = *n, excess]() { return sweepFrom(n, excess); });
        }
        return kj::READY_NOW;
      });
}

namespace {

// A page cursor: "<seq>.<remaining>.<selection>", where seq is the sequence number of the next
// job to look at (jobs may be forgotten between pages, so not a position), remaining is how many
// more jobs `limit` allows (0: no limit) and selection is "all" or "own", so that a cursor is
// never read against the other sequence.
struct Cursor {
  uint64_t seq;
  uint32_t remaining;
};

kj::String formatCursor(Cursor cursor, bool all) {
  return kj::str(cursor.seq, '.', cursor.remaining, '.', all ? "all" : "own");
}

// A decimal number without sign or leading zeros (but "0"), at most `max`.
kj::Maybe<uint64_t> parseDecimal(kj::ArrayPtr<const char> text, uint64_t max) {
  if (text.size() == 0 || text.size() > 19 || (text.size() > 1 && text[0] == '0')) return nullptr;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return nullptr;
    value = value * 10 + uint64_t(c - '0');
  }
  if (value > max) return nullptr;
  return value;
}

constexpr kj::StringPtr INVALID_CURSOR =
    "bad list cursor: pass the `next` of the previous page, with the same filter"_kj;

kj::Maybe<Cursor> parseCursor(kj::StringPtr text, bool all) {
  auto firstDot = text.findFirst('.');
  auto lastDot = text.findLast('.');
  if (firstDot == nullptr || lastDot == nullptr) return nullptr;
  size_t first = KJ_ASSERT_NONNULL(firstDot), last = KJ_ASSERT_NONNULL(lastDot);
  if (first == last || text.slice(last + 1) != (all ? "all" : "own")) return nullptr;
  auto position = parseDecimal(text.slice(0, first), kj::maxValue);
  auto remaining = parseDecimal(kj::arrayPtr(text.begin() + first + 1, text.begin() + last),
                                0xffffffffu);
  KJ_IF_MAYBE (p, position) {
    KJ_IF_MAYBE (r, remaining) {
      return Cursor{*p, uint32_t(*r)};
    }
  }
  return nullptr;
}

// Approximately what one JobInfo costs on the wire.
size_t estimatedInfoBytes(const JobRecord& rec) {
  size_t cgroupBytes = 0;
  KJ_IF_MAYBE (cgroup, rec.placement.cgroup) {
    cgroupBytes = cgroup->path.size() + cgroup->ioDevice.size();
  }
  size_t bytes = 512 + rec.id.size() + rec.owner.size() + rec.command.size() + rec.error.size() +
                 rec.workingDir.size() + rec.executor.size() + cgroupBytes;
  for (auto& arg : rec.args) bytes += arg.size() + 16;
  bytes += rec.name.size();
  for (auto& label : rec.labels) bytes += label.key.size() + label.value.size() + 32;
  return bytes;
}

}  // namespace

ListPage JobTable::list(const ListQuery& query) const {
  ListPage page;
  bool all = query.owner == nullptr;
  kj::ArrayPtr<Job* const> jobs = order;
  KJ_IF_MAYBE (owner, query.owner) {
    KJ_IF_MAYBE (own, byOwner.find(*owner)) {
      jobs = own->jobs;
    } else {
      jobs = nullptr;
    }
  }
  auto selected = [&](const Job& job) {
    if (query.states != 0 && (query.states & (1u << uint(job.rec.state))) == 0) return false;
    if (query.name.size() > 0 && job.rec.name != query.name) return false;
    for (auto& wanted : query.labels) {
      bool carried = false;
      for (auto& label : job.rec.labels) {
        if (label.key == wanted.key) {
          carried = label.value == wanted.value;
          break;
        }
      }
      if (!carried) return false;
    }
    return true;
  };

  uint32_t remaining = query.limit;
  size_t start = 0;
  size_t scanned = 0;
  if (query.after.size() > 0) {
    KJ_IF_MAYBE (parsed, parseCursor(query.after, all)) {
      if (parsed->seq > nextSeq) throwUserError(ErrorKind::INVALID, INVALID_CURSOR);
      remaining = parsed->remaining;
      // The first job at or after the cursor's: jobs forgotten meanwhile are simply gone.
      start = std::lower_bound(jobs.begin(), jobs.end(), parsed->seq,
                               [](Job* job, uint64_t seq) { return job->seq < seq; }) -
              jobs.begin();
    } else {
      throwUserError(ErrorKind::INVALID, INVALID_CURSOR);
    }
  } else if (query.limit > 0) {
    // The newest `limit` selected jobs start where a backward scan finds the limit-th of them.
    size_t position = jobs.size();
    uint32_t found = 0;
    while (position > 0 && found < query.limit && scanned < LIST_SCAN_JOBS) {
      --position;
      ++scanned;
      if (selected(*jobs[position])) ++found;
    }
    start = position;
  }

  size_t bytes = 0;
  size_t position = start;
  while (position < jobs.size() && scanned < LIST_SCAN_JOBS) {
    if (remaining == 0 && query.limit > 0) break;
    auto& job = *jobs[position];
    if (selected(job)) {
      size_t size = estimatedInfoBytes(job.rec);
      if (page.jobs.size() == LIST_PAGE_JOBS ||
          (page.jobs.size() > 0 && bytes + size > LIST_PAGE_BYTES)) {
        break;
      }
      page.jobs.add(&job);
      bytes += size;
      if (query.limit > 0) --remaining;
    }
    ++position;
    ++scanned;
  }
  bool more = position < jobs.size() && !(query.limit > 0 && remaining == 0);
  if (more) page.next = formatCursor(Cursor{jobs[position]->seq, remaining}, all);
  return page;
}

kj::Promise<void> JobTable::load() {
  auto records = store.loadAll();
  kj::HashSet<kj::StringPtr> known;
  for (auto& record : records) known.insert(record.id);
  // Jobs of executors that keep them across runnerd's restarts (another process runs them):
  // taken back below.
  kj::Vector<kj::StringPtr> toAdopt;
  for (auto& record : records) {
    if (record.state != JobState::RUNNING) continue;
    KJ_IF_MAYBE (executor, executors.find(record.executor)) {
      if (executor->keepsJobs()) {
        toAdopt.add(record.id);
        continue;
      }
    }
    // The previous runnerd ran it in its own process. Nothing can reap it or learn how it ends,
    // so it does not outlive the restart: its process group is killed here, and its cgroup (with
    // whatever left the group) below, as systemd's KillMode=control-group would have done with
    // the server. A pid now another process's (its start time differs) is not the job's: then
    // the job is long gone.
    bool alive = false;
    if (record.pid > 0) {
      KJ_IF_MAYBE (start, executors::processStartTime(record.pid)) {
        alive = record.pidStartTime == 0 || *start == record.pidStartTime;
      }
    }
    if (alive) kill(-record.pid, SIGKILL);
    record.state = JobState::LOST;
    record.endedAt = nowMillis();
    record.error = !alive ? kj::str(Store::LOST_ERROR)
                   : executors.find(record.executor) == nullptr
                       ? kj::str("runnerd restarted without the executor '", record.executor,
                                 "' the job ran on; the job was killed")
                       : kj::str("runnerd restarted while the job was running; the job was killed");
    record.pid = 0;
    record.pidStartTime = 0;
    store.update(record);
    ++jobMetrics.ends[static_cast<uint>(EndCause::LOST)];
    log("job lost id=", record.id, " owner=", record.owner, ": ", record.error);
  }

  // Cgroups named after a job of this server's (one it recorded, or one whose output file it made
  // before crashing in its start): nothing of this server runs yet, so whatever is in them is
  // left over. Other names are not ours to touch: another runnerd may share the parent.
  kj::HashSet<kj::String> swept;
  auto isOurs = [&](kj::StringPtr name) {
    // Executors may share a hierarchy (the local executor's tracking cgroups and the cgroup
    // executor's): each cgroup is swept once.
    if (swept.contains(name)) return false;
    if (known.contains(name)) return true;
    auto path = kj::str(cfg.logDir, '/', name, ".log");
    struct stat st;
    return name.findFirst('/') == nullptr && lstat(path.cStr(), &st) == 0 && S_ISREG(st.st_mode);
  };
  for (auto name : executors.names()) {
    auto& executor = KJ_ASSERT_NONNULL(executors.find(name));
    for (auto& cgroup : executor.sweepLeftovers(isOurs)) {
      log("killed what was left in the cgroup of job ", cgroup, " and removed it",
          known.contains(cgroup) ? "" : " (a job the previous runnerd never recorded)");
      swept.insert(kj::mv(cgroup));
    }
  }

  // Jobs launched by a runnerd that crashed before recording them: nobody can ask for them.
  kj::Vector<kj::Promise<void>> work;
  for (auto name : executors.names()) {
    auto& executor = KJ_ASSERT_NONNULL(executors.find(name));
    if (!executor.keepsJobs()) continue;
    auto recorded = kj::heap<kj::HashSet<kj::String>>();
    for (auto& record : records) recorded->insert(kj::str(record.id));
    auto isKnown = [&recorded = *recorded](kj::StringPtr id) { return recorded.contains(id); };
    work.add(executor.discardUnknown(kj::mv(isKnown))
                 .then([this, name](kj::Array<kj::String> ids) {
                   for (auto& id : ids) {
                     log("executor ", name, " held job ", id,
                         ", which no runnerd recorded (it crashed while starting it): killed it");
                   }
                 })
                 .attach(kj::mv(recorded)));
  }
  for (auto& id : outputFiles.removeUnknown([&](kj::StringPtr id) { return known.contains(id); })) {
    log("removed the output file of a job a previous runnerd never recorded id=", id);
  }

  for (auto& record : records) add(kj::mv(record));
  for (auto id : toAdopt) {
    auto& job = *KJ_ASSERT_NONNULL(jobs.find(id));
    auto& executor = KJ_ASSERT_NONNULL(executors.find(job.rec.executor));
    work.add(executor.adopt(job.rec.id).then(
        [this, &job](kj::Maybe<kj::Own<executors::Process>> process) {
          KJ_IF_MAYBE (p, process) {
            resume(job, kj::mv(*p));
          } else {
            executors::ExitStatus lost;
            lost.lost = kj::str("the executor '", job.rec.executor,
                                "' no longer held the job when runnerd restarted (its process "
                                "was restarted without it); nothing is known of how it ended");
            job.runningSlot = takeRunningSlot(job.rec.owner, true);
            job.finish(lost);
          }
        }));
  }
  kj::Vector<kj::String> owners;
  for (auto& entry : byOwner) owners.add(kj::str(entry.key));
  for (auto& owner : owners) forgetPastRetention(owner);
  forgetPastTotal();
  startRetention();
  return kj::joinPromises(work.releaseAsArray());
}

void JobTable::resume(Job& job, kj::Own<executors::Process> process) {
  // The output file is where the job writes; runnerd needs it open for the size limit and to
  // give back what was allocated past its end.
  int fd = open(job.path.cStr(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    job.output = kj::AutoCloseFd(fd);
    // What it wrote while runnerd was away arrived by the file's last write (whose time is the
    // kernel's coarse clock: it may be a tick before the recorded start).
    struct stat st;
    if (fstat(fd, &st) == 0) {
      int64_t lastWrite = int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
      job.times.observe(st.st_size, kj::max(lastWrite, job.rec.startedAt));
    }
  } else {
    log("cannot open the output file of job ", job.rec.id, ": ", strerror(errno));
  }
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { job.watch = watcher.watch(job.path); })) {
    log("cannot watch the output of job ", job.rec.id, ": ", e->getDescription());
  }
  // Taken back whatever the owner's limit: the job runs already.
  job.runningSlot = takeRunningSlot(job.rec.owner, true);
  log("job taken back id=", job.rec.id, " owner=", job.rec.owner, " pid=", process->pid(),
      " executor=", job.rec.executor);
  tasks.add(process->onExit().then([&job](executors::ExitStatus status) { job.finish(status); }));
  job.process = kj::mv(process);
  job.outputLimit = job.enforceOutputLimit().eagerlyEvaluate([&job](kj::Exception&& e) {
    job.context.log("cannot watch the output size of job ", job.rec.id, ": ", e.getDescription());
  });
  // From the recorded start and the output file's last write: the time runnerd was away counts.
  job.armTimeouts();
}

kj::Array<kj::String> JobTable::buildEnvironment(kj::ArrayPtr<const kj::String> extra,
                                                 const executors::Credentials& user) {
  kj::Vector<kj::String> env;
  env.add(kj::str("PATH=", DEFAULT_PATH));
  env.add(kj::str("HOME=", user.homeDir));
  env.add(kj::str("USER=", user.userName));
  env.add(kj::str("LOGNAME=", user.userName));
  env.add(kj::str("LANG=C.UTF-8"));
  for (auto& entry : extra) {
    requireNoNul(entry, "environment");
    auto name = envName(entry);
    if (name.size() == 0 || name.size() == entry.size()) {
      throwUserError(ErrorKind::INVALID,
                     kj::str("environment entries must look like NAME=value: ", printable(entry)));
    }
    bool replaced = false;
    for (auto& existing : env) {
      if (envName(existing) == name) {
        existing = kj::str(entry);
        replaced = true;
      }
    }
    if (!replaced) env.add(kj::str(entry));
  }
  return env.releaseAsArray();
}

namespace {

// A command without a slash is looked for in the job's PATH (the last one `env` gives, else the
// default): refused here, with its kind, when the executor would refuse to search that many
// directories.
void requireSearchablePath(kj::ArrayPtr<const kj::String> env) {
  kj::StringPtr path = DEFAULT_PATH;
  for (auto& entry : env) {
    if (entry.startsWith("PATH=")) path = entry.slice(strlen("PATH="));
  }
  size_t directories = 1;
  for (char c : path) directories += c == ':';
  if (directories > executors::MAX_PATH_ENTRIES) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("the job's PATH has ", directories, " directories; at most ",
                           executors::MAX_PATH_ENTRIES, " are searched"));
  }
}

// An executor's failure to launch (thrown here, or by the supervisor and passed on over its
// socket) as a client reads it: with the kind it carries, or one by its type: an executor that
// is not answering is unavailable, a limit it cannot apply is invalid, a bound of its own is a
// limit. Anything else keeps no kind: the RPC layer logs it and answers "internal".
kj::Exception launchError(kj::Exception&& e) {
  kj::Maybe<ErrorKind> kind;
  switch (e.getType()) {
    case kj::Exception::Type::DISCONNECTED:
      kind = ErrorKind::UNAVAILABLE;
      break;
    case kj::Exception::Type::UNIMPLEMENTED:
      kind = ErrorKind::INVALID;
      break;
    case kj::Exception::Type::OVERLOADED:
      kind = ErrorKind::LIMIT;
      break;
    case kj::Exception::Type::FAILED:
      break;
  }
  return passedOn(kj::mv(e), kind);
}

kj::String defaultWorkingDir(const executors::Credentials& user, bool homeMadeAtLaunch) {
  struct stat st;
  if (homeMadeAtLaunch) return kj::str(user.homeDir);
  if (stat(user.homeDir.cStr(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return kj::str(user.homeDir);
  }
  return kj::str("/");
}

}  // namespace

kj::Promise<Job*> JobTable::start(kj::StringPtr owner, StartRequest&& request) {
  if (request.command.size() == 0) throwUserError(ErrorKind::INVALID, "empty command");
  requireNoNul(request.command, "command");
  for (auto& arg : request.args) requireNoNul(arg, "argument");
  requireNoNul(request.workingDir, "working directory");
  if (request.workingDir.size() > 0 && !request.workingDir.startsWith("/")) {
    throwUserError(ErrorKind::INVALID, kj::str("the working directory must be an absolute path: ",
                                               printable(request.workingDir)));
  }

  if (request.command.findFirst('/') == nullptr) requireSearchablePath(request.env);

  auto executorName =
      request.executor.size() > 0 ? kj::str(request.executor) : kj::str(cfg.defaultExecutor);
  executors::Executor* executor;
  KJ_IF_MAYBE (found, executors.find(executorName)) {
    executor = found;
  } else {
    throwUserError(ErrorKind::INVALID,
                   kj::str("unknown executor '", printable(executorName),
                           "' (known: ", kj::strArray(executors.names(), ", "), ")"));
  }

  uint64_t maxOutput = cfg.maxOutputBytes;
  if (request.maxOutputBytes > 0) {
    if (request.maxOutputBytes > cfg.maxOutputBytes) {
      throwUserError(ErrorKind::INVALID,
                     kj::str("the job's output limit (", request.maxOutputBytes,
                             " bytes) is above the server's (", cfg.maxOutputBytes, " bytes)"));
    }
    maxOutput = request.maxOutputBytes;
  }
  if (writer->backlog() >= cfg.maxDiskBacklog) {
    throwUserError(ErrorKind::UNAVAILABLE, kj::Exception::Type::OVERLOADED,
                   kj::str("the job was not started: ", STORE_NOT_ANSWERING));
  }
  if (outputFiles.backlog() >= cfg.maxDiskBacklog) {
    throwUserError(ErrorKind::UNAVAILABLE, kj::Exception::Type::OVERLOADED,
                   kj::str("the job was not started: ", OUTPUT_NOT_ANSWERING));
  }
  if (request.name.size() > 0) requireValidJobName(request.name);
  requireValidLabels(request.labels);
  auto slot = takeRunningSlot(owner);
  if (logFilesystemFull()) {
    throwUserError(ErrorKind::UNAVAILABLE,
                   "no room for the job's output: the log directory's file system is full");
  }
  kj::Maybe<kj::Own<NameClaim>> claim;
  if (request.name.size() > 0) claim = kj::heap<NameClaim>(*this, owner, request.name);

  // Before anything is made for the job: an owner that cannot be mapped leaves nothing behind.
  // A new owner's uid and home are made off the event loop first.
  // Making them waits for the state disk (a synced write): as long as any other write at most.
  auto begun = kj::systemPreciseMonotonicClock().now();
  return withStoreDeadline(timer, cfg.identities->prepare(owner))
      .then([this, owner = kj::str(owner), request = kj::mv(request), executor,
             executorName = kj::mv(executorName), maxOutput, slot = kj::mv(slot),
             claim = kj::mv(claim)]() mutable {
        return startPrepared(owner, kj::mv(request), *executor, kj::mv(executorName), maxOutput,
                             kj::mv(slot), kj::mv(claim));
      })
      .then([this, begun](Job* job) {
        if (job->record().state == JobState::RUNNING) {
          jobMetrics.startLatency.observe(kj::systemPreciseMonotonicClock().now() - begun);
        }
        return job;
      });
}

kj::Promise<Job*> JobTable::startPrepared(kj::StringPtr owner, StartRequest&& request,
                                          executors::Executor& executor, kj::String executorName,
                                          uint64_t maxOutput, kj::Own<void> slot,
                                          kj::Maybe<kj::Own<NameClaim>> claim) {
  auto user = cfg.identities->forOwner(owner);
  auto env = buildEnvironment(request.env, user);

  JobRecord record;
  record.id = newJobId();
  record.owner = kj::str(owner);
  record.command = kj::mv(request.command);
  record.args = kj::mv(request.args);
  record.workingDir =
      request.workingDir.size() > 0 ? kj::mv(request.workingDir) : defaultWorkingDir(user, cfg.identities->homesMadeAtLaunch());
  record.executor = kj::mv(executorName);
  record.limits = request.limits;
  record.isolation = request.isolation;
  record.createdAt = nowMillis();
  record.uid = user.uid;
  record.gid = user.gid;
  record.maxOutputBytes = maxOutput;
  record.name = kj::mv(request.name);
  record.labels = kj::mv(request.labels);
  record.timeoutMillis = request.timeoutMillis;
  record.idleTimeoutMillis = request.idleTimeoutMillis;

  auto path = kj::str(cfg.logDir, '/', record.id, ".log");
  // Nothing of the job may be left behind if it never starts: made before the file is asked
  // for, its removal follows the creation on the output files' thread.
  auto output = kj::heap<UnstartedOutput>(outputFiles, record.id, kj::mv(path));
  auto created = outputFiles.createOnThread(record.id).exclusiveJoin(
      timer.afterDelay(STORE_DEADLINE).then([this, id = kj::str(record.id)]() -> kj::AutoCloseFd {
        log("cannot start job ", id, ": its output file was not made within ",
            STORE_DEADLINE / kj::SECONDS, " s");
        throwUserError(ErrorKind::UNAVAILABLE, OUTPUT_NOT_ANSWERING);
      }));
  return created.then([this, executor = &executor, record = kj::mv(record), env = kj::mv(env),
                       user = kj::mv(user), output = kj::mv(output), slot = kj::mv(slot),
                       claim = kj::mv(claim)](kj::AutoCloseFd outputFd) mutable {
    executors::LaunchRequest launch;
    launch.jobId = kj::str(record.id);
    kj::Vector<kj::String> argv(record.args.size() + 1);
    argv.add(kj::str(record.command));
    for (auto& arg : record.args) argv.add(kj::str(arg));
    launch.argv = argv.releaseAsArray();
    launch.env = kj::mv(env);
    launch.workingDir = kj::str(record.workingDir);
    launch.outputFd = outputFd;
    launch.credentials = kj::mv(user);
    launch.limits = record.limits;
    launch.isolation = record.isolation;

    // The job has its own copy of the output descriptor once launch() has returned.
    auto launching = kj::evalNow([&]() {
                       return executor->launch(kj::mv(launch));
                     }).catch_([](kj::Exception&& e) -> executors::LaunchResult {
      kj::throwFatalException(launchError(kj::mv(e)));
    });
    return launching.then([this, record = kj::mv(record), output = kj::mv(output),
                           outputFd = kj::mv(outputFd), slot = kj::mv(slot), claim = kj::mv(claim)](
                              executors::LaunchResult&& result) mutable -> kj::Promise<Job*> {
      record.startedAt = nowMillis();

      kj::Maybe<kj::Own<executors::Process>> process;
      KJ_SWITCH_ONEOF(result) {
        KJ_CASE_ONEOF(proc, kj::Own<executors::Process>) {
          record.pid = proc->pid();
          // As the executor read it at the start; read here only if it could not.
          record.pidStartTime = proc->trace().pidStartTime;
          if (record.pidStartTime == 0) {
            record.pidStartTime = executors::processStartTime(record.pid).orDefault(0);
          }
          record.placement = proc->placement().clone();
          process = kj::mv(proc);
        }
        KJ_CASE_ONEOF(failure, executors::LaunchFailure) {
          record.state = JobState::FAILED;
          record.endedAt = record.startedAt;
          record.error = kj::mv(failure.message);
          record.outputBytes = 0;
        }
      }

      // Watched before it is recorded: if the watch cannot be made (out of inotify watches), the
      // start fails and the process dies with `process`, leaving no record of a job nobody
      // follows.
      kj::Maybe<kj::Own<OutputWatcher::Watch>> watch;
      if (process != nullptr) watch = watcher.watch(output->path);

      // Answered once the record is on disk. Meanwhile the job runs, but is nowhere: its end is
      // observed (onExit) only once it is recorded, so that the end's write follows the start's.
      auto written = withStoreDeadline(timer, writer->insert(record.clone()))
                         .then([]() -> kj::Maybe<kj::Exception> { return nullptr; },
                               [](kj::Exception&& e) -> kj::Maybe<kj::Exception> {
                                 return kj::mv(e);
                               });
      return written.then([this, record = kj::mv(record), output = kj::mv(output),
                           outputFd = kj::mv(outputFd), slot = kj::mv(slot),
                           process = kj::mv(process), watch = kj::mv(watch), claim = kj::mv(claim)](
                              kj::Maybe<kj::Exception> failure) mutable -> Job* {
        KJ_IF_MAYBE (e, failure) {
          // Not recorded: the job must not run unrecorded. Its process dies with `process`, its
          // output file with `output`; a record that reaches the disk late is removed after it.
          KJ_IF_MAYBE (proc, process) {
            (*proc)->signalAll(SIGKILL);
          }
          process = nullptr;
          tasks.add(writer->forget(kj::str(record.id)));
          log("cannot record the start of job ", record.id, " owner=", record.owner,
              ", so it was killed: ", e->getDescription());
          kj::StringPtr why = "the state store could not record it"_kj;
          if (isStoreNotAnswering(*e)) {
            why = STORE_NOT_ANSWERING;
          } else if (strstr(e->getDescription().cStr(), "database or disk is full") != nullptr) {
            why = "the state store could not record it: its disk is full"_kj;
          } else if (strstr(e->getDescription().cStr(), "disk I/O error") != nullptr) {
            why = "the state store could not record it: its disk is failing (I/O error)"_kj;
          }
          throwUserError(ErrorKind::UNAVAILABLE, kj::str("the job was not started: ", why));
        }
        output->keep();
        auto& job = add(kj::mv(record));
        KJ_IF_MAYBE (c, claim) {
          (*c)->keep();
        }
        jobMetrics.starts.upsert(kj::str(job.rec.executor), 1,
                                 [](uint64_t& count, uint64_t) { ++count; });
        if (job.hasEnded()) ++jobMetrics.ends[static_cast<uint>(EndCause::FAILED)];

        KJ_IF_MAYBE (proc, process) {
          job.watch = kj::mv(watch);
          log("job started id=", job.rec.id, " owner=", job.rec.owner, " uid=", job.rec.uid,
              " pid=", job.rec.pid, " executor=", job.rec.executor, " command=", job.rec.command);
          tasks.add(
              (*proc)->onExit().then([&job](executors::ExitStatus status) { job.finish(status); }));
          job.process = kj::mv(*proc);
          job.output = kj::mv(outputFd);
          job.runningSlot = kj::mv(slot);
          job.outputLimit = job.enforceOutputLimit().eagerlyEvaluate([&job](kj::Exception&& e) {
            job.context.log("cannot watch the output size of job ", job.rec.id, ": ",
                          e.getDescription());
          });
          job.armTimeouts();
        } else {
          log("job failed id=", job.rec.id, " owner=", job.rec.owner, ": ", job.rec.error);
          tasks.add(kj::evalLater([this, owner = kj::str(job.rec.owner)]() {
            forgetPastRetention(owner);
            forgetPastTotal();
          }));
          if (cfg.retainJobs > 0) requestSweep();
        }
        // Held for the caller, who releases it once it holds the job in its own way.
        job.hold();
        return &job;
      });
    });
  });
}

Histogram JobTable::storeLatency() const {
  return writer->latency();
}

size_t JobTable::storeBacklog() const {
  return writer->backlog();
}

kj::Maybe<kj::Duration> JobTable::storeWaiting() const {
  return writer->waiting();
}

kj::Maybe<Job&> JobTable::resolve(kj::StringPtr caller, kj::StringPtr text) {
  KJ_IF_MAYBE (job, find(text)) {
    return *job;
  }
  KJ_IF_MAYBE (owned, names.find(caller)) {
    KJ_IF_MAYBE (job, owned->find(text)) {
      // nullptr: a start of that name is under way, and there is no such job yet.
      if (*job != nullptr) return **job;
    }
  }
  if (text.size() == 0 || !looksLikeIdPrefix(text)) return nullptr;
  if (text.size() < MIN_ID_PREFIX_CHARS) {
    throwUserError(ErrorKind::NOT_FOUND, kj::str("job ", text, " (an id prefix needs at least ",
                                                 MIN_ID_PREFIX_CHARS, " characters)"));
  }
  // Every id with this prefix sorts in [text, text with its last character raised by one).
  auto end = kj::str(text);
  ++end.begin()[end.size() - 1];
  kj::Vector<Job*> matches;
  bool more = false;
  for (auto& entry : byId.range(text, kj::StringPtr(end))) {
    if (matches.size() == MAX_PREFIX_CANDIDATES) {
      more = true;
      break;
    }
    matches.add(entry.value);
  }
  if (matches.size() == 1) return *matches[0];
  if (matches.size() == 0) return nullptr;
  auto ids = KJ_MAP(job, matches) {
    return kj::str(job->rec.id);
  };
  throwUserError(ErrorKind::INVALID, kj::str("ambiguous job id prefix ", text, ": it matches ",
                                             kj::strArray(ids, ", "), more ? ", ..." : ""));
}

kj::Maybe<Job&> JobTable::find(kj::StringPtr id) {
  KJ_IF_MAYBE (job, jobs.find(id)) {
    return **job;
  }
  return nullptr;
}

}  // namespace runner

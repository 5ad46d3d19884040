#include "executors/job-process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/map.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executors/reap.h"
#include "executors/spawn.h"

namespace runner::executors {
namespace {

// How long the end of a job waits for its cgroup to empty after the kill. A process waiting in
// the kernel (for a throttled direct write, say) dies only when that wait is over; past this the
// end is reported without it, and the remover's thread keeps killing and removes the cgroup.
constexpr kj::Duration EMPTY_WAIT = 30 * kj::SECONDS;
// While waiting for the cgroup to empty, kill again this long after the previous kill, in case a
// process was on its way in when it was sent.
constexpr kj::Duration REKILL_AFTER = 100 * kj::MILLISECONDS;
// The longest pause between two looks at whether the cgroup is empty.
constexpr kj::Duration MAX_EMPTY_POLL = 20 * kj::MILLISECONDS;

// A job in a cgroup whose Process was destroyed while it ran: on the remover's thread, its main
// process is reaped (it was SIGKILLed; waiting for it may block while it finishes a wait in the
// kernel), then its cgroup is removed, killing whatever is still in it.
struct AbandonedJob {
  pid_t pid;
  kj::AutoCloseFd pidfd;
  kj::Own<cgroup::JobCgroup> cgroup;

  AbandonedJob(pid_t pid, kj::AutoCloseFd pidfd, kj::Own<cgroup::JobCgroup> cgroup)
      : pid(pid), pidfd(kj::mv(pidfd)), cgroup(kj::mv(cgroup)) {}
  ~AbandonedJob() noexcept(false) {
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { reapExited(pidfd.get(), pid); })) {
      KJ_LOG(ERROR, "could not reap a killed job", pid, *exception);
    }
  }
  KJ_DISALLOW_COPY(AbandonedJob);
};

// Adds what /proc says of `pid` to `usage`: CPU time (its own and its reaped children's, fields
// 14 to 17 of stat), resident memory now (VmRSS) and the largest peak of one process (VmHWM).
// A process that is gone, or a zombie, adds nothing.
void addProcessUsage(pid_t pid, Usage& usage) {
  static const long ticksPerSecond = sysconf(_SC_CLK_TCK);
  char path[64];
  char buffer[4096];
  auto readFile = [&](const char* name) -> ssize_t {
    snprintf(path, sizeof(path), "/proc/%d/%s", int(pid), name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (n >= 0) buffer[n] = '\0';
    return n;
  };
  if (readFile("stat") > 0) {
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    const char* close = strrchr(buffer, ')');
    unsigned long long utime, stime;
    long long cutime, cstime;
    if (close != nullptr &&
        sscanf(close + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
               &utime, &stime, &cutime, &cstime) == 4 &&
        ticksPerSecond > 0) {
      uint64_t perTick = 1000000 / ticksPerSecond;
      usage.cpuUserMicros += (utime + uint64_t(kj::max(cutime, 0ll))) * perTick;
      usage.cpuSystemMicros += (stime + uint64_t(kj::max(cstime, 0ll))) * perTick;
    }
  }
  if (readFile("status") > 0) {
    auto field = [&](const char* name) -> uint64_t {
      const char* at = strstr(buffer, name);
      if (at == nullptr) return 0;
      return strtoull(at + strlen(name), nullptr, 10) * 1024;
    };
    usage.currentMemoryBytes += field("\nVmRSS:");
    usage.peakMemoryBytes = kj::max(usage.peakMemoryBytes, field("\nVmHWM:"));
  }
}

}  // namespace

JobProcess::JobProcess(kj::UnixEventPort& eventPort, pid_t pid, kj::AutoCloseFd pidfd,
                       uint64_t startTime, kj::Maybe<JobCgroupUse> cgroup)
    : mainPid(pid),
      startTime(startTime),
      pidfd(kj::mv(pidfd)),
      inCgroup(kj::mv(cgroup)),
      observer(eventPort, this->pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
      exited(observer.whenBecomesReadable().then([this]() { return finish(); }).fork()) {}

JobProcess::~JobProcess() noexcept(false) {
  // A kill under way refers to the cgroup, which goes to the remover's thread below.
  requestedKill = nullptr;
  killing = nullptr;
  KJ_IF_MAYBE (use, inCgroup) {
    if (use->cgroup.get() == nullptr) return;  // handed on when the job's end was finished
    if (reaped) {
      // Destroyed while its end was being finished: the cgroup goes as it would have.
      use->remover.dispose(kj::mv(use->cgroup));
      return;
    }
    // The job outlives its owner: SIGKILL what is in the cgroup now (without waiting for a
    // freeze), and leave reaping the main process and removing the cgroup, which kills again
    // what a fork let slip, to the remover's thread. The pidfd stays open here until the
    // observer watching it is gone.
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { use->cgroup->signalAll(SIGKILL); })) {
      KJ_LOG(ERROR, "could not kill a job's cgroup", mainPid, *exception);
    }
    int copy = dup(pidfd.get());
    if (copy < 0) {
      KJ_LOG(ERROR, "could not hand a killed job to the remover; reaping it here", mainPid,
             strerror(errno));
      KJ_IF_MAYBE (exception,
                   kj::runCatchingExceptions([&]() { reapExited(pidfd.get(), mainPid); })) {
        KJ_LOG(ERROR, "could not reap a killed job", mainPid, *exception);
      }
      use->remover.dispose(kj::mv(use->cgroup));
      return;
    }
    use->remover.dispose(
        kj::heap<AbandonedJob>(mainPid, kj::AutoCloseFd(copy), kj::mv(use->cgroup)));
    return;
  }
  if (reaped) return;
  // The job outlives its owner: kill it all and reap synchronously, so that nothing leaks.
  killGroup(SIGKILL);
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { reapExited(pidfd.get(), mainPid); })) {
    KJ_LOG(ERROR, "could not reap a killed job", mainPid, *exception);
  }
}

void JobProcess::signalAll(int signal) {
  if (reaped) return;
  KJ_IF_MAYBE (use, inCgroup) {
    if (signal == SIGKILL) {
      // Asynchronous (a v1 freeze is waited for on the timer); the end of the job waits for it.
      requestedKill = kill().eagerlyEvaluate(nullptr);
    } else {
      use->cgroup->signalAll(signal);
    }
  } else {
    killGroup(signal);
  }
}

kj::Promise<Usage> JobProcess::usageSoFar() {
  if (reaped) return status.usage;
  Usage usage;
  KJ_IF_MAYBE (use, inCgroup) {
    if (use->accounting) {
      usage = use->cgroup->usage();
      // The main process's own peak when the cgroup has no peak counter (v2 before Linux 5.19).
      if (usage.peakMemoryBytes == 0) {
        Usage main;
        addProcessUsage(mainPid, main);
        usage.peakMemoryBytes = main.peakMemoryBytes;
      }
      return usage;
    }
    auto pids = use->cgroup->processes();
    for (pid_t pid : pids.slice(0, kj::min(pids.size(), USAGE_PROCESSES))) {
      addProcessUsage(pid, usage);
    }
  } else {
    addProcessUsage(mainPid, usage);
  }
  sampledPeak = kj::max(sampledPeak, usage.peakMemoryBytes);
  usage.peakMemoryBytes = sampledPeak;
  return usage;
}

void JobProcess::keepSampledPeak() {
  // The rusage peak of a local job is unknown (0) when it is below the launcher's own (see
  // reapExited()); what /proc showed while it ran is a lower bound that is the job's.
  if (status.usage.peakMemoryBytes == 0) status.usage.peakMemoryBytes = sampledPeak;
}

const Placement& JobProcess::placement() const {
  KJ_IF_MAYBE (use, inCgroup) {
    return use->placement;
  }
  return noPlacement;
}

JobTrace JobProcess::trace() const {
  JobTrace trace;
  trace.pid = mainPid;
  trace.pidStartTime = startTime;
  KJ_IF_MAYBE (use, inCgroup) {
    if (use->cgroup.get() != nullptr) {
      trace.cgroupVersion = use->cgroup->version();
      trace.cgroupPaths = KJ_MAP(path, use->cgroup->allPaths()) {
        return kj::str(path);
      };
    }
    trace.accounting = use->accounting;
    trace.placement = use->placement.clone();
  }
  return trace;
}

kj::Promise<ExitStatus> JobProcess::finish() {
  KJ_IF_MAYBE (use, inCgroup) {
    // The usage reapExited() reports is replaced by the cgroup's counters in finishCgroup().
    status = reapExited(pidfd.get(), mainPid);
    keepSampledPeak();
    reaped = true;
    return finishCgroup(*use)
        .then([]() {},
              [this](kj::Exception&& e) {
                // The main process's exit is the fact the caller needs; a cgroup that could not
                // be read or removed is logged.
                KJ_LOG(ERROR, "cleaning up a job's cgroup failed", mainPid, e);
              })
        .then([this]() { return status; });
  }
  // The main process is a zombie: it still holds the process group id, so no other group can
  // have taken it and this reaches exactly what the job left behind.
  killGroup(SIGKILL);
  status = reapExited(pidfd.get(), mainPid);
  keepSampledPeak();
  reaped = true;
  return status;
}

void JobProcess::killGroup(int signal) {
  KJ_SYSCALL_HANDLE_ERRORS(::kill(-mainPid, signal)) {
    case ESRCH:
      break;
    default:
      KJ_FAIL_SYSCALL("kill", error, -mainPid, signal);
  }
}

// Kills every process in the cgroup; while a kill is under way, asking again joins it. Never
// fails: what could not be done is logged.
kj::Promise<void> JobProcess::kill() {
  auto& use = KJ_ASSERT_NONNULL(inCgroup);
  if (killing == nullptr || killDone) {
    killDone = false;
    killing = kj::evalNow([&use]() { return use.cgroup->killAll(use.timer); })
                  .then([this]() { killDone = true; },
                        [this](kj::Exception&& e) {
                          killDone = true;
                          KJ_LOG(ERROR, "killing a job's cgroup failed", mainPid, e);
                        })
                  .fork();
  }
  return KJ_ASSERT_NONNULL(killing).addBranch();
}

// The kill under way, if any, has finished (it refers to the cgroup).
kj::Promise<void> JobProcess::killSettled() {
  if (killing == nullptr || killDone) return kj::READY_NOW;
  return KJ_ASSERT_NONNULL(killing).addBranch();
}

// KillMode=control-group: whatever the main process left running dies with it; then the counters
// are final and the cgroup can go.
kj::Promise<void> JobProcess::finishCgroup(JobCgroupUse& use) {
  auto deadline = use.timer.now() + EMPTY_WAIT;
  return killSettled()
      .then([this, &use, deadline]() {
        return waitUntilEmpty(use, deadline, use.timer.now(), 1 * kj::MILLISECONDS);
      })
      .then([this, &use]() {
        requestedKill = nullptr;
        killing = nullptr;
        if (!use.accounting) {
          // A tracking cgroup holds nothing of the job once empty: the next job may have it,
          // which spares a mkdir and an rmdir.
          KJ_IF_MAYBE (spares, use.spares) {
            if (spares->size() < SPARE_TRACKING_CGROUPS && use.cgroup->isEmpty()) {
              spares->add(kj::mv(use.cgroup));
              return;
            }
          }
          use.remover.dispose(kj::mv(use.cgroup));
          return;
        }
        // The kernel counts OOM kills per cgroup but does not say whom it killed. The main
        // process dying of SIGKILL while the count is above zero is the best available sign that
        // it was the victim; a SIGKILL from elsewhere in the same job after an OOM kill of
        // another process would be reported as an OOM kill of the main process too.
        uint64_t oomKills = use.cgroup->oomKillCount();
        status.oomKilled = oomKills > 0;
        status.oomKilledMain = status.oomKilled && status.signaled && status.termSignal == SIGKILL;
        status.usage = use.cgroup->usage();
        status.usage.currentMemoryBytes = 0;
        // The exit is reported now; the empty cgroup goes on the remover's thread.
        use.remover.dispose(kj::mv(use.cgroup));
      });
}

// Resolves once the cgroup is empty, killing it at `nextKill` and again REKILL_AFTER after each
// kill, or at `deadline`. Only ever waits on the timer.
kj::Promise<void> JobProcess::waitUntilEmpty(JobCgroupUse& use, kj::TimePoint deadline,
                                             kj::TimePoint nextKill, kj::Duration pause) {
  if (use.cgroup->isEmpty()) return kj::READY_NOW;
  auto now = use.timer.now();
  if (now >= deadline) {
    KJ_LOG(ERROR,
           "processes of an ended job survived SIGKILL for 30 s (waiting in the kernel?); its end "
           "is reported without them, and its cgroup is removed once they are gone",
           mainPid, use.cgroup->path(), use.cgroup->allPaths().size());
    return kj::READY_NOW;
  }
  if (now >= nextKill) {
    return kill().then([this, &use, deadline, pause]() {
      return waitUntilEmpty(use, deadline, use.timer.now() + REKILL_AFTER, pause);
    });
  }
  return use.timer.afterDelay(pause).then([this, &use, deadline, nextKill, pause]() {
    return waitUntilEmpty(use, deadline, nextKill, kj::min(pause * 2, MAX_EMPTY_POLL));
  });
}

bool isUnreapedChild(pid_t pid, uint64_t startTime) {
  if (pid <= 0) return false;
  siginfo_t info = {};
  // WNOWAIT: a child that has ended stays a zombie, to be reaped by whoever watches it again.
  if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) return false;
  KJ_IF_MAYBE (time, processStartTime(pid)) {
    return startTime == 0 || *time == startTime;
  }
  return false;
}

kj::AutoCloseFd openPidfd(pid_t pid) {
  int fd;
  KJ_SYSCALL(fd = syscall(SYS_pidfd_open, pid, 0), pid);
  return kj::AutoCloseFd(fd);
}

namespace {

// Fields 5 (process group) and 6 (session) of /proc/PID/stat, or nullptr when the process is gone.
struct GroupAndSession {
  pid_t group;
  pid_t session;
};

kj::Maybe<GroupAndSession> groupAndSessionOf(int procFd, kj::StringPtr pid) {
  auto path = kj::str(pid, "/stat");
  int fd = openat(procFd, path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  kj::AutoCloseFd file(fd);
  char buffer[1024];
  ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
  if (n <= 0) return nullptr;
  buffer[n] = '\0';
  // Field 2 is "(comm)", and comm may hold spaces and ')': the rest follows the last ')'.
  const char* rest = strrchr(buffer, ')');
  if (rest == nullptr) return nullptr;
  char state;
  int parent, group, session;
  if (sscanf(rest + 1, " %c %d %d %d", &state, &parent, &group, &session) != 4) return nullptr;
  return GroupAndSession{group, session};
}

}  // namespace

size_t killSessionOf(pid_t pid, uint64_t startTime) {
  KJ_REQUIRE(pid > 1, "not a job's main process", pid);
  // Holding a pidfd keeps the kernel from giving the pid to another process while this looks.
  kj::AutoCloseFd pinned;
  int fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    pinned = kj::AutoCloseFd(fd);
    KJ_IF_MAYBE (time, processStartTime(pid)) {
      if (startTime != 0 && *time != startTime) return 0;  // another process has the pid now
    }
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
  }

  int procFd;
  KJ_SYSCALL(procFd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  kj::AutoCloseFd proc(procFd);
  kj::HashSet<pid_t> killed;
  // A process of the session may fork between the listing and the kill; another round finds the
  // child. A killed process waiting in the kernel stays listed until that wait is over, so a
  // round that finds only those ends the search.
  for (int round = 0; round < 10; ++round) {
    bool foundNew = false;
    DIR* dir = opendir("/proc");
    if (dir == nullptr) KJ_FAIL_SYSCALL("opendir(/proc)", errno);
    KJ_DEFER(closedir(dir));
    while (struct dirent* entry = readdir(dir)) {
      kj::StringPtr name = entry->d_name;
      if (name.size() == 0 || name[0] < '0' || name[0] > '9') continue;
      pid_t other = atoi(name.cStr());
      if (killed.contains(other)) continue;
      KJ_IF_MAYBE (ids, groupAndSessionOf(procFd, name)) {
        if (ids->group != pid && ids->session != pid) continue;
        if (kill(other, SIGKILL) == 0) {
          killed.insert(other);
          foundNew = true;
        }
      }
    }
    if (!foundNew) break;
  }
  return killed.size();
}

}  // namespace runner::executors

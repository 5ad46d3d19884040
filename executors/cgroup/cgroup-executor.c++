#include "executors/cgroup/cgroup-executor.h"

#include <errno.h>
#include <kj/debug.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "executors/reap.h"
#include "executors/spawn.h"
#include "executors/threads.h"

namespace runner::executors::cgroup {
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

// Holds a job's cgroup until its process exists; hands it to the remover if it never does.
struct CgroupHandoff {
  Disposer& remover;
  kj::Own<JobCgroup> cgroup;

  CgroupHandoff(Disposer& remover, kj::Own<JobCgroup> cgroup)
      : remover(remover), cgroup(kj::mv(cgroup)) {}
  ~CgroupHandoff() noexcept(false) {
    if (cgroup.get() != nullptr) remover.dispose(kj::mv(cgroup));
  }
  KJ_DISALLOW_COPY(CgroupHandoff);
};

// A job whose Process was destroyed while it ran: on the remover's thread, its main process is
// reaped (it was SIGKILLed; waiting for it may block while it finishes a wait in the kernel), then
// its cgroup is removed, killing whatever is still in it.
struct AbandonedJob {
  pid_t pid;
  kj::AutoCloseFd pidfd;
  kj::Own<JobCgroup> cgroup;

  AbandonedJob(pid_t pid, kj::AutoCloseFd pidfd, kj::Own<JobCgroup> cgroup)
      : pid(pid), pidfd(kj::mv(pidfd)), cgroup(kj::mv(cgroup)) {}
  ~AbandonedJob() noexcept(false) {
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { reapExited(pidfd.get(), pid); })) {
      KJ_LOG(ERROR, "could not reap a killed job", pid, *exception);
    }
  }
  KJ_DISALLOW_COPY(AbandonedJob);
};

// A job started by spawn() inside its cgroup. As with the local executor, the exit is observed
// once by a promise forked at construction, whether or not anyone waits for it.
class CgroupProcess final : public Process {
 public:
  // `accounting`: OOM kills and usage come from the cgroup's counters; without it (a tracking
  // cgroup), usage is the main process's own, OOM kills are not reported, and the emptied cgroup
  // goes back to `spareTracking` for another job.
  CgroupProcess(kj::UnixEventPort& eventPort, kj::Timer& timer, Disposer& remover,
                kj::Vector<kj::Own<JobCgroup>>& spareTracking, Spawned spawned,
                kj::Own<JobCgroup> cgroup, Placement placement, bool accounting)
      : accounting(accounting),
        spareTracking(spareTracking),
        timer(timer),
        remover(remover),
        mainPid(spawned.pid),
        pidfd(kj::mv(spawned.pidfd)),
        cgroup(kj::mv(cgroup)),
        where(kj::mv(placement)),
        observer(eventPort, pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
        exited(observer.whenBecomesReadable()
                   .then([this]() {
                     reapMain();
                     return finishCgroup().then([]() {},
                                                [this](kj::Exception&& e) {
                                                  // The main process's exit is the fact the caller
                                                  // needs; a cgroup that could not be read or
                                                  // removed is logged.
                                                  KJ_LOG(ERROR, "cleaning up a job's cgroup failed",
                                                         mainPid, e);
                                                });
                   })
                   .then([this]() { return status; })
                   .fork()) {}

  ~CgroupProcess() noexcept(false) {
    // A kill under way refers to the cgroup, which goes to the remover's thread below.
    requestedKill = nullptr;
    killing = nullptr;
    if (cgroup.get() == nullptr) return;  // handed on when the job's end was finished
    if (reaped) {
      // Destroyed while its end was being finished: the cgroup goes as it would have.
      remover.dispose(kj::mv(cgroup));
      return;
    }
    // The job outlives its owner: SIGKILL what is in the cgroup now (without waiting for a
    // freeze), and leave reaping the main process and removing the cgroup, which kills again what
    // a fork let slip, to the remover's thread. The pidfd stays open here until the observer
    // watching it is gone.
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { cgroup->signalAll(SIGKILL); })) {
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
      remover.dispose(kj::mv(cgroup));
      return;
    }
    remover.dispose(kj::heap<AbandonedJob>(mainPid, kj::AutoCloseFd(copy), kj::mv(cgroup)));
  }

  KJ_DISALLOW_COPY(CgroupProcess);

  pid_t pid() const override { return mainPid; }

  // Each call returns a new branch of the same exit; branches must not outlive this Process.
  kj::Promise<ExitStatus> onExit() override { return exited.addBranch(); }

  void signalAll(int signal) override {
    if (reaped) return;
    if (signal == SIGKILL) {
      // Asynchronous (a v1 freeze is waited for on the timer); the end of the job waits for it.
      requestedKill = kill().eagerlyEvaluate(nullptr);
    } else {
      cgroup->signalAll(signal);
    }
  }

  const Placement& placement() const override { return where; }

 private:
  bool accounting;
  kj::Vector<kj::Own<JobCgroup>>& spareTracking;
  kj::Timer& timer;
  Disposer& remover;
  pid_t mainPid;
  kj::AutoCloseFd pidfd;
  kj::Own<JobCgroup> cgroup;
  Placement where;
  ExitStatus status;
  bool reaped = false;
  // The kill under way, shared by everyone who asks for one (see kill()).
  kj::Maybe<kj::ForkedPromise<void>> killing;
  bool killDone = false;
  kj::Maybe<kj::Promise<void>> requestedKill;
  kj::UnixEventPort::FdObserver observer;
  kj::ForkedPromise<ExitStatus> exited;

  // The usage reapExited() reports is replaced by the cgroup's counters in finishCgroup().
  void reapMain() {
    status = reapExited(pidfd.get(), mainPid);
    reaped = true;
  }

  // Kills every process in the cgroup; while a kill is under way, asking again joins it. Never
  // fails: what could not be done is logged.
  kj::Promise<void> kill() {
    if (killing == nullptr || killDone) {
      killDone = false;
      killing = kj::evalNow([this]() { return cgroup->killAll(timer); })
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
  kj::Promise<void> killSettled() {
    if (killing == nullptr || killDone) return kj::READY_NOW;
    return KJ_ASSERT_NONNULL(killing).addBranch();
  }

  // KillMode=control-group: whatever the main process left running dies with it; then the
  // counters are final and the cgroup can go.
  kj::Promise<void> finishCgroup() {
    auto deadline = timer.now() + EMPTY_WAIT;
    return killSettled()
        .then([this, deadline]() {
          return waitUntilEmpty(deadline, timer.now(), 1 * kj::MILLISECONDS);
        })
        .then([this]() {
          requestedKill = nullptr;
          killing = nullptr;
          if (!accounting) {
            // A tracking cgroup holds nothing of the job once empty: the next job may have it,
            // which spares a mkdir and an rmdir.
            if (spareTracking.size() < CgroupExecutor::SPARE_TRACKING_CGROUPS &&
                cgroup->isEmpty()) {
              spareTracking.add(kj::mv(cgroup));
            } else {
              remover.dispose(kj::mv(cgroup));
            }
            return;
          }
          // The kernel counts OOM kills per cgroup but does not say whom it killed. The main
          // process dying of SIGKILL while the count is above zero is the best available sign
          // that it was the victim; a SIGKILL from elsewhere in the same job after an OOM kill of
          // another process would be reported as an OOM kill of the main process too.
          uint64_t oomKills = cgroup->oomKillCount();
          status.oomKilled = oomKills > 0;
          status.oomKilledMain =
              status.oomKilled && status.signaled && status.termSignal == SIGKILL;
          status.usage = cgroup->usage();
          // The exit is reported now; the empty cgroup goes on the remover's thread.
          remover.dispose(kj::mv(cgroup));
        });
  }

  // Resolves once the cgroup is empty, killing it at `nextKill` and again REKILL_AFTER after each
  // kill, or at `deadline`. Only ever waits on the timer.
  kj::Promise<void> waitUntilEmpty(kj::TimePoint deadline, kj::TimePoint nextKill,
                                   kj::Duration pause) {
    if (cgroup->isEmpty()) return kj::READY_NOW;
    auto now = timer.now();
    if (now >= deadline) {
      KJ_LOG(ERROR,
             "processes of an ended job survived SIGKILL for 30 s (waiting in the kernel?); its end "
             "is reported without them, and its cgroup is removed once they are gone",
             mainPid, cgroup->path(), cgroup->allPaths().size());
      return kj::READY_NOW;
    }
    if (now >= nextKill) {
      return kill().then([this, deadline, pause]() {
        return waitUntilEmpty(deadline, timer.now() + REKILL_AFTER, pause);
      });
    }
    return timer.afterDelay(pause).then([this, deadline, nextKill, pause]() {
      return waitUntilEmpty(deadline, nextKill, kj::min(pause * 2, MAX_EMPTY_POLL));
    });
  }
};

}  // namespace

CgroupExecutor::CgroupExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer,
                               kj::Own<CgroupDriver> driver, kj::Duration launchTimeout)
    : eventPort(eventPort), timer(timer), driver(kj::mv(driver)), launchTimeout(launchTimeout) {}

kj::Array<kj::String> CgroupExecutor::sweepLeftovers(
    kj::FunctionParam<bool(kj::StringPtr name)> isOurs) {
  kj::Vector<kj::String> swept;
  for (auto& name : driver->listJobCgroups()) {
    if (!isOurs(name)) continue;
    KJ_IF_MAYBE (cgroup, driver->open(name)) {
      // Now, before anything is served; then removed on the remover's thread, which kills again
      // whatever a fork let slip and waits for what the kernel holds.
      (*cgroup)->signalAll(SIGKILL);
      disposer.dispose(kj::mv(*cgroup));
      swept.add(kj::mv(name));
    }
  }
  return swept.releaseAsArray();
}

kj::StringPtr CgroupExecutor::name() const {
  return "cgroup";
}

kj::Promise<LaunchResult> CgroupExecutor::launch(LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");

  kj::Maybe<IoDevice> ioDevice;
  if (request.limits.ioReadBytesPerSec || request.limits.ioWriteBytesPerSec) {
    ioDevice = ioDeviceOf(request.workingDir, ioLimitName(request.limits));
  }
  auto cgroup = driver->create(request.jobId, request.limits, ioDevice);

  Placement::Cgroup placed;
  placed.version = cgroup->version();
  placed.path = kj::heapString(cgroup->path());
  KJ_IF_MAYBE (device, ioDevice) {
    placed.ioDevice = device->describe();
  }
  Placement placement;
  placement.cgroup = kj::mv(placed);
  return launchIn(kj::mv(request), kj::mv(cgroup), kj::mv(placement), true);
}

kj::Promise<LaunchResult> CgroupExecutor::launchTracked(LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
  KJ_REQUIRE(!request.limits.any(), "a tracked launch applies no limits");
  kj::Own<JobCgroup> cgroup;
  if (spareTracking.empty()) {
    cgroup = driver->createTracking(request.jobId);
  } else {
    cgroup = kj::mv(spareTracking.back());
    spareTracking.removeLast();
  }
  return launchIn(kj::mv(request), kj::mv(cgroup), Placement(), false);
}

kj::Promise<LaunchResult> CgroupExecutor::launchIn(LaunchRequest&& request,
                                                   kj::Own<JobCgroup> cgroup, Placement placement,
                                                   bool accounting) {
  SpawnOptions options{request, cgroup->spawnProcsFds()};
  options.launchTimeout = launchTimeout;
  auto spawning = spawn(launcher, timer, options);
  // A launch that fails or is cancelled leaves the cgroup to the remover's thread: a cancelled
  // child may take a moment to die (spawn() kills it and reaps it once its launcher thread is
  // done), and rmdir answers EBUSY until then.
  auto handoff = kj::heap<CgroupHandoff>(disposer, kj::mv(cgroup));
  return spawning.then([this, handoff = kj::mv(handoff), placement = kj::mv(placement),
                        accounting](SpawnResult&& result) mutable -> LaunchResult {
    KJ_SWITCH_ONEOF(result) {
      KJ_CASE_ONEOF(spawned, Spawned) {
        kj::Own<Process> process =
            kj::heap<CgroupProcess>(eventPort, timer, disposer, spareTracking, kj::mv(spawned),
                                    kj::mv(handoff->cgroup), kj::mv(placement), accounting);
        return kj::mv(process);
      }
      KJ_CASE_ONEOF(failure, LaunchFailure) {
        return kj::mv(failure);
      }
    }
    KJ_UNREACHABLE;
  });
}

}  // namespace runner::executors::cgroup

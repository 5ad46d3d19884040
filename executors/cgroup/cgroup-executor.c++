#include "executors/cgroup/cgroup-executor.h"

#include <kj/debug.h>
#include <signal.h>

#include "executors/reap.h"
#include "executors/spawn.h"
#include "executors/threads.h"

namespace runner::executors::cgroup {
namespace {

// How long, in 1 ms steps, the end of a job waits for its cgroup to empty after the kill.
// (Removal, retried while rmdir answers EBUSY, is the JobCgroup destructor's, on the remover's
// thread.)
constexpr uint32_t EMPTY_WAIT_STEPS = 5000;
// While waiting for the cgroup to empty, kill again this often (in steps), in case a process
// was on its way in when the first kill was sent.
constexpr uint32_t REKILL_EVERY_STEPS = 100;

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
    if (reaped) return;
    // The job outlives its owner: kill all of it and reap the main process synchronously. The
    // JobCgroup's destructor then removes the cgroup, retrying while the kernel says EBUSY.
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { cgroup->killAll(); })) {
      KJ_LOG(ERROR, "could not kill a job's cgroup", mainPid, *exception);
    }
    KJ_IF_MAYBE (exception,
                 kj::runCatchingExceptions([&]() { reapExited(pidfd.get(), mainPid); })) {
      KJ_LOG(ERROR, "could not reap a killed job", mainPid, *exception);
    }
  }

  KJ_DISALLOW_COPY(CgroupProcess);

  pid_t pid() const override { return mainPid; }

  // Each call returns a new branch of the same exit; branches must not outlive this Process.
  kj::Promise<ExitStatus> onExit() override { return exited.addBranch(); }

  void signalAll(int signal) override {
    if (reaped) return;
    if (signal == SIGKILL) {
      cgroup->killAll();
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
  kj::UnixEventPort::FdObserver observer;
  kj::ForkedPromise<ExitStatus> exited;

  // The usage reapExited() reports is replaced by the cgroup's counters in finishCgroup().
  void reapMain() {
    status = reapExited(pidfd.get(), mainPid);
    reaped = true;
  }

  // KillMode=control-group: whatever the main process left running dies with it; then the
  // counters are final and the cgroup can go.
  kj::Promise<void> finishCgroup() {
    if (!cgroup->isEmpty()) cgroup->killAll();
    return waitUntilEmpty(0).then([this]() {
      if (!accounting) {
        // A tracking cgroup holds nothing of the job once empty: the next job may have it,
        // which spares a mkdir and an rmdir.
        if (spareTracking.size() < CgroupExecutor::SPARE_TRACKING_CGROUPS && cgroup->isEmpty()) {
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
      status.oomKilledMain = status.oomKilled && status.signaled && status.termSignal == SIGKILL;
      status.usage = cgroup->usage();
      // The exit is reported now; the empty cgroup goes on the remover's thread.
      remover.dispose(kj::mv(cgroup));
    });
  }

  kj::Promise<void> waitUntilEmpty(uint32_t step) {
    if (cgroup->isEmpty()) return kj::READY_NOW;
    if (step >= EMPTY_WAIT_STEPS) {
      KJ_LOG(ERROR, "processes survived the kill of a job's cgroup", mainPid, cgroup->path());
      return kj::READY_NOW;
    }
    if (step > 0 && step % REKILL_EVERY_STEPS == 0) cgroup->killAll();
    return timer.afterDelay(1 * kj::MILLISECONDS).then([this, step]() {
      return waitUntilEmpty(step + 1);
    });
  }
};

}  // namespace

CgroupExecutor::CgroupExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer,
                               kj::Own<CgroupDriver> driver, kj::Duration launchTimeout)
    : eventPort(eventPort), timer(timer), driver(kj::mv(driver)), launchTimeout(launchTimeout) {}

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

  Placement placement;
  placement.cgroupVersion = cgroup->version();
  placement.cgroupPath = kj::heapString(cgroup->path());
  KJ_IF_MAYBE (device, ioDevice) {
    placement.ioDevice = device->describe();
  }
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

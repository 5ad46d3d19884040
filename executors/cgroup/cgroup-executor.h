#pragma once
// The `cgroup` executor: what `local` does (spawn() as the run-as user, pidfd-watched exit,
// namespace isolation), plus a cgroup per job carrying its limits. The job's main process is
// created inside the cgroup; when it ends, everything left in the cgroup is killed (systemd's
// KillMode=control-group), OOM kills and usage are read from the cgroup's counters, the exit is
// reported, and a thread of the executor's removes the cgroup. Nothing of this waits on the event
// loop: a v1 freeze and the cgroup's emptying are checked on the timer, and a cgroup that never
// empties (a process waiting in the kernel) delays only the end of its own job, by at most 30 s.

#include <kj/async-unix.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "executors/cgroup/cgroup-driver.h"
#include "executors/executor.h"
#include "executors/spawn.h"
#include "executors/threads.h"

namespace runner::executors::cgroup {

struct CgroupSlot;

class CgroupExecutor final : public Executor {
 public:
  // `eventPort` watches the pidfds; `timer` paces the short waits after a job's main process
  // has ended (for its cgroup to empty and become removable). Both must outlive the executor
  // and every Process it returns. `driver` is the host's (newHostCgroupDriver()) or one built
  // for a given hierarchy.
  // `launchTimeout` is spawn()'s (tests shorten it).
  CgroupExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer, kj::Own<CgroupDriver> driver,
                 kj::Duration launchTimeout = LAUNCH_TIMEOUT);

  kj::StringPtr name() const override;

  // Creates the job's cgroup (named after request.jobId) with its limits, then spawns the main
  // process inside it, both on a launcher thread after request.beforeStart. IO limits apply to
  // the disk holding request.workingDir. A limit that cannot be applied fails the launch, naming
  // it, and leaves no cgroup behind. The cgroup is removed again when the launch fails or is
  // cancelled.
  kj::Promise<LaunchResult> launch(LaunchRequest&& request) override;

  // For the local executor: the job in a tracking cgroup (CgroupDriver::createTracking()), with
  // no limits and no accounting, so that stopping it or its end reaches every process it made,
  // whatever session or process group they moved to. The Process reports no placement, and the
  // main process's own usage.
  kj::Promise<LaunchResult> launchTracked(LaunchRequest&& request);

  // The job in the cgroup `trace` names, watched again (a tracking cgroup when !trace.accounting,
  // for the local executor). Throws when its cgroup is gone.
  kj::Own<Process> reattach(const JobTrace& trace) override;

  // What is left in the job's session and process group, and in its cgroups: killed (v2's
  // cgroup.kill; v1 freezes first, waiting on the timer, which also thaws a cgroup a crashed
  // supervisor left frozen), then the cgroups removed on the remover's thread.
  kj::Promise<void> killRemains(kj::StringPtr jobId, const JobTrace& trace) override;

  // Removes the spare tracking cgroups; resolves once the remover's thread is idle.
  kj::Promise<void> drain() override;

  // Kills every process in each cgroup below the parent whose name `isOurs` accepts (a job id of
  // this server's) and removes those cgroups (on the remover's thread). Returns their names.
  kj::Array<kj::String> sweepLeftovers(
      kj::FunctionParam<bool(kj::StringPtr name)> isOurs) override;

 private:
  kj::UnixEventPort& eventPort;
  kj::Timer& timer;
  kj::Own<CgroupDriver> driver;
  kj::Duration launchTimeout;
  // Removes ended jobs' cgroups.
  Disposer disposer;
  // Emptied tracking cgroups kept for the next jobs, at most SPARE_TRACKING_CGROUPS, where the
  // driver can rename them (v1): each is renamed after the job that takes it. Removed (inline)
  // with the executor.
  kj::Vector<kj::Own<JobCgroup>> spareTracking;
  Launcher launcher;

  kj::Promise<void> whenRemoverIdle();
  // Spawns the job after `make` has made its cgroup in `slot` (and found the device of its IO
  // limits), both on the launcher thread.
  kj::Promise<LaunchResult> launchIn(LaunchRequest&& request, kj::Own<CgroupSlot> slot,
                                     kj::Function<void(CgroupSlot&)> make, bool accounting);
};

}  // namespace runner::executors::cgroup

#pragma once
// The `local` executor: a job is the processes its main process makes, started by spawn() and
// watched through its pidfd on the KJ event loop. It applies no resource limits (that is the
// cgroup executor's job) but does apply namespace isolation.

#include <kj/async-unix.h>
#include <kj/timer.h>

#include "executors/cgroup/cgroup-executor.h"
#include "executors/executor.h"
#include "executors/spawn.h"

namespace runner::executors {

// With a tracking cgroup driver (a root runnerd on a host with cgroups), each job is tracked in
// a cgroup of its own without limits: a stop signals every process of the job, and when the
// main process ends everything left is killed, including processes that left its session or
// process group (setsid, setpgid, a double fork). Without one, a job is its main process's
// process group: what is still in that group when the main process ends is SIGKILLed before the
// main process is reaped, and a process that leaves the group escapes.
class LocalExecutor final : public Executor {
 public:
  // `eventPort` and `timer` must outlive the executor and every Process it returns; launches
  // and pidfds are watched on the first, launch deadlines kept by the second. `launchTimeout`
  // is spawn()'s (tests shorten it). `tracking`: the driver of the jobs' tracking cgroups
  // (CgroupDriver::createTracking()), or nullptr for process groups.
  LocalExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer,
                kj::Duration launchTimeout = LAUNCH_TIMEOUT,
                kj::Maybe<kj::Own<cgroup::CgroupDriver>> tracking = nullptr);

  // Whether jobs are tracked in cgroups (rather than process groups).
  bool tracksCgroups() const { return tracker != nullptr; }

  kj::StringPtr name() const override;

  // Throws UNIMPLEMENTED, naming the limits, for a request with any limit set.
  kj::Promise<LaunchResult> launch(LaunchRequest&& request) override;

  // A job of this executor, watched again: in its tracking cgroup when it had one, by its process
  // group otherwise.
  kj::Own<Process> reattach(const JobTrace& trace) override;

  // What is left of the job: its session and process group, and its tracking cgroup.
  kj::Promise<void> killRemains(kj::StringPtr jobId, const JobTrace& trace) override;

  // The tracking cgroups kept for later jobs are removed.
  kj::Promise<void> drain() override;

  // The tracking cgroups a previous server left (see CgroupExecutor::sweepLeftovers()); nothing
  // without tracking.
  kj::Array<kj::String> sweepLeftovers(
      kj::FunctionParam<bool(kj::StringPtr name)> isOurs) override;

 private:
  kj::UnixEventPort& eventPort;
  kj::Timer& timer;
  kj::Duration launchTimeout;
  Launcher launcher;
  kj::Maybe<kj::Own<cgroup::CgroupExecutor>> tracker;
};

}  // namespace runner::executors

#pragma once
// The `cgroup` executor: what `local` does (spawn() as the run-as user, pidfd-watched exit,
// namespace isolation), plus a cgroup per job carrying its limits. The job's main process is
// created inside the cgroup; when it ends, everything left in the cgroup is killed (systemd's
// KillMode=control-group), OOM kills and usage are read from the cgroup's counters, and the
// cgroup is removed.

#include <kj/async-unix.h>
#include <kj/timer.h>

#include "executors/cgroup/cgroup-driver.h"
#include "executors/executor.h"
#include "executors/spawn.h"

namespace runner::executors::cgroup {

class CgroupExecutor final : public Executor {
 public:
  // `eventPort` watches the pidfds; `timer` paces the short waits after a job's main process
  // has ended (for its cgroup to empty and become removable). Both must outlive the executor
  // and every Process it returns. `driver` is the host's (newHostCgroupDriver()) or one built
  // for a given hierarchy.
  CgroupExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer, kj::Own<CgroupDriver> driver);

  kj::StringPtr name() const override;

  // Creates the job's cgroup (named after request.jobId) with its limits, then spawns the main
  // process inside it. IO limits apply to the disk holding request.workingDir. A limit that
  // cannot be applied throws, naming it, and leaves no cgroup behind.
  // The cgroup is removed again when the launch fails or is cancelled.
  kj::Promise<LaunchResult> launch(LaunchRequest&& request) override;

 private:
  kj::UnixEventPort& eventPort;
  kj::Timer& timer;
  kj::Own<CgroupDriver> driver;
  Launcher launcher;
};

}  // namespace runner::executors::cgroup

#pragma once
// The `cgroup` executor: what `local` does (spawn() as the run-as user, pidfd-watched exit,
// namespace isolation), plus a cgroup per job carrying its limits. The job's main process is
// created inside the cgroup; when it ends, everything left in the cgroup is killed (systemd's
// KillMode=control-group), OOM kills and usage are read from the cgroup's counters, the exit is
// reported, and a thread of the executor's removes the cgroup.

#include <kj/async-unix.h>
#include <kj/mutex.h>
#include <kj/thread.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "executors/cgroup/cgroup-driver.h"
#include "executors/executor.h"
#include "executors/spawn.h"

namespace runner::executors::cgroup {

// Removes the cgroups of ended jobs on a thread of its own: an rmdir per hierarchy (some 30 us
// each on v1) that a job's end need not wait for. What is queued when it is destroyed is
// removed first.
class CgroupRemover {
 public:
  CgroupRemover();
  ~CgroupRemover() noexcept(false);
  KJ_DISALLOW_COPY(CgroupRemover);

  // Destroys `cgroup` on the thread (its destructor removes it, retrying while it is busy).
  void remove(kj::Own<JobCgroup> cgroup);

 private:
  struct State {
    kj::Vector<kj::Own<JobCgroup>> queue;
    bool stopping = false;
  };
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  void run();
};

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
  CgroupRemover remover;
  Launcher launcher;
};

}  // namespace runner::executors::cgroup

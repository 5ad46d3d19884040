#pragma once
// The `local` executor: a job is a process group of the run-as user, started by spawn() and
// watched through its pidfd on the KJ event loop. It applies no resource limits (that is the
// cgroup executor's job) but does apply namespace isolation.

#include <kj/async-unix.h>
#include <kj/timer.h>

#include "executors/executor.h"
#include "executors/spawn.h"

namespace runner::executors {

// A job is its main process's process group. Everything still in that group when the main
// process ends is SIGKILLed before the main process is reaped; a process that leaves the group
// (setsid, setpgid) escapes that, which only the cgroup executor prevents.
class LocalExecutor final : public Executor {
 public:
  // `eventPort` and `timer` must outlive the executor and every Process it returns; launches
  // and pidfds are watched on the first, launch deadlines kept by the second. `launchTimeout`
  // is spawn()'s (tests shorten it).
  LocalExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer,
                kj::Duration launchTimeout = LAUNCH_TIMEOUT);

  kj::StringPtr name() const override;

  // Throws UNIMPLEMENTED, naming the limits, for a request with any limit set.
  kj::Promise<LaunchResult> launch(LaunchRequest&& request) override;

 private:
  kj::UnixEventPort& eventPort;
  kj::Timer& timer;
  kj::Duration launchTimeout;
  Launcher launcher;
};

}  // namespace runner::executors

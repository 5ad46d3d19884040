#pragma once
// spawn(): the one place where runner creates a job's main process.
//
// clone3() with CLONE_PIDFD (plus CLONE_INTO_CGROUP for a cgroup v2 job, plus namespace flags
// when asked) creates the child as a copy of runnerd, sharing no memory with it; then a small
// plain-C child side: reset signals, own session, stdio, close every other descriptor, join
// cgroups, set up namespaces, chdir, drop to the run-as user, exec. Failure of any child step
// comes back through a close-on-exec pipe as an errno and the name of the step.
//
// The parent never waits for the child synchronously. Between dropping to the run-as user and
// exec, the child can be stopped (SIGSTOP) by any other job of that user; a server that waited
// for it in vfork() or a blocking read() would stop serving everyone. So the error pipe is
// watched by the event loop, and a launch that neither execs nor fails within a deadline is
// killed and reported as a failure. Both executors build on it.

#include <kj/async-unix.h>
#include <kj/io.h>
#include <kj/one-of.h>
#include <kj/time.h>
#include <kj/timer.h>

#include "executors/executor.h"

namespace runner::executors {

// How long a launch may take from clone to exec before it is killed and reported as failed.
// Nothing legitimate takes this long (the child only makes a few system calls); a child that
// does was stopped by someone or is stuck, and its job would never start anyway.
constexpr kj::Duration LAUNCH_TIMEOUT = 10 * kj::SECONDS;

struct SpawnOptions {
  // argv, env, cwd, output fd, credentials and isolation come from here; limits are the
  // caller's business (a cgroup). Needed only while spawn() runs: the child gets its own copy
  // of everything (memory and descriptors) at clone time.
  const LaunchRequest& request;

  // cgroup v2: a directory fd of the cgroup the child is created in (CLONE_INTO_CGROUP).
  kj::Maybe<int> cgroupDirFd;

  // cgroup v1: open `cgroup.procs` files; the child writes "0" to each before exec, which
  // moves it into those cgroups while it is still privileged.
  kj::ArrayPtr<const int> cgroupProcsFds;

  // After this long without exec or a reported failure, the child is SIGKILLed (which works
  // on a stopped process too), reaped, and the launch fails.
  kj::Duration launchTimeout = LAUNCH_TIMEOUT;
};

struct Spawned {
  pid_t pid;
  // Readable (POLLIN) once the process has exited; the caller reaps it through this
  // (waitid(P_PIDFD)). The process is an ordinary SIGCHLD child: nothing else in runnerd may
  // reap children it does not own (no waitpid(-1)).
  kj::AutoCloseFd pidfd;
};

using SpawnResult = kj::OneOf<Spawned, LaunchFailure>;

// Creates the process before returning, then resolves once it has exec'd (the pipe closed:
// Spawned) or failed (a step reported an error, or `launchTimeout` passed: the child is reaped
// and the LaunchFailure says why, e.g. "exec nope: No such file or directory"). Never blocks the
// event loop while the child runs; the pipe and the pidfd are watched on `eventPort`, the
// deadline on `timer`, and both must outlive the promise. Cancelling the promise kills and
// reaps the child (no zombie, no descriptor left open).
//
// Throws at once for a request that cannot work (empty argv, uid or gid 0, a relative working
// directory, an argument with a NUL byte, or, when runnerd is not root, credentials other than
// its own; the job then runs as runnerd's user without switching). The working directory is
// entered after dropping privileges, so the run-as user must be able to reach it.
kj::Promise<SpawnResult> spawn(kj::UnixEventPort& eventPort, kj::Timer& timer,
                               const SpawnOptions& options);

// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or nullptr
// when there is no such process. With the pid it identifies a process across pid reuse.
kj::Maybe<uint64_t> processStartTime(pid_t pid);

}  // namespace runner::executors

#pragma once
// spawn(): the one place where runner creates a job's main process.
//
// clone() with CLONE_VM | CLONE_VFORK | CLONE_PIDFD like posix_spawn() (or clone3() with
// CLONE_INTO_CGROUP for a cgroup v2 job), plus namespace flags when asked, then a
// small plain-C child side: reset signals, own session, stdio, close every other descriptor,
// join cgroups, set up namespaces, chdir, drop to the run-as user, exec. Failure of any child
// step comes back through a close-on-exec pipe as an errno and the name of the step, so the
// caller learns synchronously whether the command started. Both executors build on it.

#include <kj/io.h>
#include <kj/one-of.h>

#include "executors/executor.h"

namespace runner::executors {

struct SpawnOptions {
  // argv, env, cwd, output fd, credentials and isolation come from here; limits are the
  // caller's business (a cgroup).
  const LaunchRequest& request;

  // cgroup v2: a directory fd of the cgroup the child is created in (CLONE_INTO_CGROUP).
  kj::Maybe<int> cgroupDirFd;

  // cgroup v1: open `cgroup.procs` files; the child writes "0" to each before exec, which
  // moves it into those cgroups while it is still privileged.
  kj::ArrayPtr<const int> cgroupProcsFds;
};

struct Spawned {
  pid_t pid;
  // Readable (POLLIN) once the process has exited; the caller reaps it through this
  // (waitid(P_PIDFD)). The process is an ordinary SIGCHLD child: nothing else in runnerd may
  // reap children it does not own (no waitpid(-1)).
  kj::AutoCloseFd pidfd;
};

// Starts the process; returns once it has exec'd (the pipe closed) or failed. Throws for a
// request that cannot work (empty argv, uid or gid 0, a relative working directory, an
// argument with a NUL byte, or, when runnerd is not root, credentials other than its own;
// the job then runs as runnerd's user without switching). The working directory is entered
// after dropping privileges, so the run-as user must be able to reach it.
kj::OneOf<Spawned, LaunchFailure> spawn(const SpawnOptions& options);

// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or nullptr
// when there is no such process. With the pid it identifies a process across pid reuse.
kj::Maybe<uint64_t> processStartTime(pid_t pid);

}  // namespace runner::executors

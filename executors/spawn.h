#pragma once
// spawn(): the one place where runner creates a job's main process.
//
// Like posix_spawn(), the child shares runnerd's memory until it execs (CLONE_VM) and the thread
// that created it waits until then (CLONE_VFORK): no page tables are copied and no copy-on-write
// faults are left behind, so a start costs the same however large the server has grown. The
// child runs a small plain-C side on its own stack: reset signals, join cgroups, own session,
// stdio, close every other descriptor, its private /tmp and the like in its own mount and IPC
// namespaces (see mount-namespaces.h), other namespaces, a session keyring of its own, drop to
// the job's user, chdir, exec. A failed step is written into memory the parent reads once the
// child is gone: an errno and the name of the step.
//
// That wait never happens on the event loop. Between dropping to the run-as user and exec, the
// child can be stopped (SIGSTOP) by any other job of that user; a server that waited for it
// would stop serving everyone. So children are created by a Launcher's threads, the event loop
// gets the result as a promise, and a launch that neither execs nor fails within a deadline is
// killed from the event loop (SIGKILL ends even a stopped child, which releases its launcher
// thread) and reported as a failure. Both executors build on it.

#include <kj/async.h>
#include <kj/function.h>
#include <kj/io.h>
#include <kj/mutex.h>
#include <kj/one-of.h>
#include <kj/time.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "executors/executor.h"

namespace runner::executors {

// How long a launch may take from clone to exec before it is killed and reported as failed.
// Nothing legitimate takes this long (the child only makes a few system calls); a child that
// does was stopped by someone or is stuck, and its job would never start anyway.
constexpr kj::Duration LAUNCH_TIMEOUT = 10 * kj::SECONDS;

// Directories of the job's PATH that are searched at most. Each is one execve() between the
// switch to the job's user and the job's start; a long PATH must not make a launch slow.
// runnerd refuses a longer PATH before it launches anything.
constexpr size_t MAX_PATH_ENTRIES = 64;

struct SpawnOptions {
  // argv, env, cwd, output fd, credentials and isolation come from here; limits are the
  // caller's business (a cgroup). Needed only while spawn() runs: it copies what the child
  // needs, and the child gets its own copy of the descriptor table at clone time.
  const LaunchRequest& request;

  // Open `cgroup.procs` files (one per v1 hierarchy, one for v2); the child writes "0" to each
  // before anything else, which moves it into those cgroups while it is still privileged.
  // Unlike the output descriptor, these must stay open until the promise resolves. Those
  // `beforeStart` returns take their place.
  kj::ArrayPtr<const int> cgroupProcsFds;

  // After this long without exec or a reported failure, the child is SIGKILLed (which works
  // on a stopped process too), reaped, and the launch fails. Counted from the end of
  // `beforeStart`: while it runs there is no child to wait for.
  kj::Duration launchTimeout = LAUNCH_TIMEOUT;

  // Runs on the launcher thread just before the child is created: LaunchRequest::beforeStart,
  // then what the executor makes for the job that must not exist before the caller's step (its
  // cgroups, named after the job: a record names the job first). Returns the cgroup.procs
  // descriptors the child joins, borrowed as `cgroupProcsFds` are, or none to keep those.
  // spawn() takes it.
  kj::Maybe<kj::Function<kj::Array<int>()>> beforeStart;
};

struct Spawned {
  pid_t pid;
  // Readable (POLLIN) once the process has exited; the caller reaps it through this
  // (waitid(P_PIDFD)). The process is an ordinary SIGCHLD child: nothing else in runnerd may
  // reap children it does not own (no waitpid(-1)).
  kj::AutoCloseFd pidfd;
};

using SpawnResult = kj::OneOf<Spawned, LaunchFailure>;

// The threads that create job processes. Each waits in clone() while its child runs up to exec,
// which takes well under a millisecond unless someone stopped the child; several of them keep
// one held child from delaying every other start. Threads start with the first launch and stop
// when the Launcher is destroyed, which must happen after every launch has finished or been
// cancelled.
class Launcher : private kj::TaskSet::ErrorHandler {
 public:
  explicit Launcher(uint threads = 2);
  ~Launcher() noexcept(false);
  KJ_DISALLOW_COPY(Launcher);

  // Runs `func` on the least busy launcher thread; the promise resolves on the calling thread's
  // event loop. Cancelling it waits until that thread has finished `func`.
  kj::Promise<void> run(kj::Function<void()> func);

  // For spawn(): keeps the cleanup of a cancelled launch going until it is done.
  void keepUntilDone(kj::Promise<void> cleanup);

 private:
  class Worker;
  uint threadCount;
  kj::Vector<kj::Own<Worker>> workers;
  // Destroyed before the workers it waits for.
  kj::TaskSet abandoned;

  void taskFailed(kj::Exception&& exception) override;
};

// Resolves once the process has exec'd (Spawned) or failed (a step reported an error, or
// `launchTimeout` passed: the child is reaped and the LaunchFailure says why, e.g. "exec nope:
// No such file or directory"), and rejects with what `beforeStart` threw. The child is created
// on one of `launcher`'s threads, never on the event loop's; the deadline is kept by `timer`. Both must outlive the promise. Cancelling
// the promise kills the child at once; `launcher` reaps it (no zombie, no descriptor left open)
// as soon as its thread is done with it, so that the event loop never waits for a child.
//
// Refuses (throws) to switch to the run-as user while fs.suid_dumpable is 1: the child shares
// runnerd's memory until exec, and that setting would let the run-as user trace it.
//
// Throws at once for a request that cannot work (empty argv, uid or gid 0, a relative working
// directory, an argument with a NUL byte, or, when runnerd is not root, credentials other than
// its own; the job then runs as runnerd's user without switching). The working directory is
// entered after dropping privileges, so the run-as user must be able to reach it.
kj::Promise<SpawnResult> spawn(Launcher& launcher, kj::Timer& timer, SpawnOptions&& options);

// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or nullptr
// when there is no such process. With the pid it identifies a process across pid reuse.
kj::Maybe<uint64_t> processStartTime(pid_t pid);

}  // namespace runner::executors

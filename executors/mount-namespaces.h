#pragma once
// MountNamespacePool: fresh mount and IPC namespaces for jobs, made ahead of need.
//
// Every job of a root runnerd gets a mount namespace of its own whose world-writable
// directories (/tmp, /var/tmp, /dev/shm, /run/lock) are fresh tmpfs mounts (slave propagation
// from the host, so host mounts still reach it), and an IPC namespace of its own (SysV IPC and
// POSIX message queues that nobody else sees and that go with the job). Making them in the
// job's own process, between clone and exec, costs the start tens of microseconds in runnerd,
// and their teardown, when the last process of the job exits, more again before the end can be
// observed. So a thread makes them ahead of need; a job enters them with setns(), runnerd holds
// them open for the job's life, and a Disposer closes them (which unmounts) after the end.

#include <kj/io.h>
#include <kj/mutex.h>
#include <kj/string.h>
#include <kj/thread.h>
#include <kj/vector.h>
#include <sys/types.h>

namespace runner::executors {

// The directories every user may write on a usual host, which a job gets as fresh tmpfs mounts
// of its own (sticky, world-writable) so that no job sees, plants or leaves anything there for
// another. Those that do not exist on the host are left out. What the host has below them is out
// of a job's sight.
constexpr const char* PRIVATE_TMPFS_MOUNTS[] = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock"};

// The one of PRIVATE_TMPFS_MOUNTS that `path` (absolute, without symlinks) is in or below.
kj::Maybe<kj::StringPtr> underPrivateTmpfs(kj::StringPtr path);

// A job's own namespaces, held open (-1 when the job shares runnerd's).
struct JobNamespaces {
  kj::AutoCloseFd mount;
  kj::AutoCloseFd ipc;
};

class MountNamespacePool {
 public:
  // Keeps up to `target` namespaces ready. The thread starts at once.
  explicit MountNamespacePool(uint target = 4);
  ~MountNamespacePool() noexcept(false);
  KJ_DISALLOW_COPY(MountNamespacePool);

  // Ready namespaces, or fds of -1 when none are ready or this host cannot make them (the caller
  // then makes them in the child). Never waits.
  JobNamespaces take();

 private:
  struct State {
    kj::Vector<JobNamespaces> ready;
    bool stopping = false;
  };
  uint target;
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  void run();
};

// What the thread does for each job, in a thread that has its own filesystem context and is in
// the namespaces to copy: unshare mount and IPC namespaces, slave propagation, the private tmpfs
// mounts. Returns the new namespaces, leaving the calling thread in them; throws with the
// failed step.
JobNamespaces makeJobNamespaces();

}  // namespace runner::executors

#pragma once
// MountNamespacePool: fresh mount namespaces for jobs, made ahead of need.
//
// Every job of a root runnerd gets a mount namespace of its own whose /tmp and /dev/shm are
// fresh tmpfs mounts (slave propagation from the host, so host mounts still reach it). Making
// one in the job's own process, between clone and exec, costs the start tens of microseconds in
// runnerd, and its teardown, when the last process of the job exits, more again before the end
// can be observed. So a thread makes them ahead of need; a job enters one with setns(), runnerd
// holds it open for the job's life, and a Disposer closes it (which unmounts) after the end.

#include <kj/io.h>
#include <kj/mutex.h>
#include <kj/string.h>
#include <kj/thread.h>
#include <kj/vector.h>
#include <sys/types.h>

namespace runner::executors {

class MountNamespacePool {
 public:
  // Keeps up to `target` namespaces ready. The thread starts at once.
  explicit MountNamespacePool(uint target = 4);
  ~MountNamespacePool() noexcept(false);
  KJ_DISALLOW_COPY(MountNamespacePool);

  // A ready namespace (an open /proc/.../ns/mnt), or an fd of -1 when none is ready or this host
  // cannot make them (the caller then makes one in the child). Never waits.
  kj::AutoCloseFd take();

 private:
  struct State {
    kj::Vector<kj::AutoCloseFd> ready;
    bool stopping = false;
  };
  uint target;
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  void run();
};

// What the thread does for each namespace, in a thread that has its own filesystem context and
// is in the namespace to copy: unshare, slave propagation, tmpfs on /tmp and /dev/shm. Returns
// the new namespace, leaving the calling thread in it; throws with the failed step.
kj::AutoCloseFd makePrivateTmpNamespace();

}  // namespace runner::executors

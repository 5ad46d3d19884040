#include "executors/mount-namespaces.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "executors/threads.h"

namespace runner::executors {

kj::AutoCloseFd makePrivateTmpNamespace() {
  KJ_SYSCALL(unshare(CLONE_NEWNS), "a mount namespace for a job");
  KJ_SYSCALL(mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr), "slave propagation");
  // Sticky and world-writable, like the host's. Their pages are charged to whoever writes them
  // (a job's memory cgroup), and they are gone when the namespace is.
  KJ_SYSCALL(mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "a private /tmp");
  KJ_SYSCALL(mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"),
             "a private /dev/shm");
  int fd;
  KJ_SYSCALL(fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC));
  return kj::AutoCloseFd(fd);
}

MountNamespacePool::MountNamespacePool(uint target)
    : target(target), thread(startQuietThread([this]() { run(); })) {}

MountNamespacePool::~MountNamespacePool() noexcept(false) {
  state.lockExclusive()->stopping = true;
  thread = nullptr;  // joins
}

kj::AutoCloseFd MountNamespacePool::take() {
  auto lock = state.lockExclusive();
  if (lock->ready.empty()) return kj::AutoCloseFd();
  auto fd = kj::mv(lock->ready.back());
  lock->ready.removeLast();
  return fd;
}

void MountNamespacePool::run() {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 // setns() into a mount namespace needs a filesystem context of this thread's
                 // own, and each new namespace is copied from runnerd's, not from the last one.
                 KJ_SYSCALL(unshare(CLONE_FS));
                 int fd;
                 KJ_SYSCALL(fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC));
                 kj::AutoCloseFd home(fd);
                 for (;;) {
                   {
                     auto lock = state.lockExclusive();
                     lock.wait([this](const State& state) {
                       return state.stopping || state.ready.size() < target;
                     });
                     if (lock->stopping) return;
                   }
                   auto made = makePrivateTmpNamespace();
                   KJ_SYSCALL(setns(home.get(), CLONE_NEWNS), "back to runnerd's namespace");
                   state.lockExclusive()->ready.add(kj::mv(made));
                 }
               })) {
    KJ_LOG(WARNING, "jobs make their mount namespaces themselves", *exception);
  }
}

}  // namespace runner::executors

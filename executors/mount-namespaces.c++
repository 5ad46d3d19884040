#include "executors/mount-namespaces.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "executors/spawn-child.h"
#include "executors/threads.h"

namespace runner::executors {

namespace {

kj::AutoCloseFd openOwnNamespace(kj::StringPtr kind) {
  auto path = kj::str("/proc/thread-self/ns/", kind);
  int fd;
  KJ_SYSCALL(fd = open(path.cStr(), O_RDONLY | O_CLOEXEC), path);
  return kj::AutoCloseFd(fd);
}

}  // namespace

kj::Maybe<kj::StringPtr> underPrivateTmpfs(kj::StringPtr path) {
  for (kj::StringPtr dir : PRIVATE_TMPFS_MOUNTS) {
    if (path.startsWith(dir) && (path.size() == dir.size() || path[dir.size()] == '/')) return dir;
  }
  return nullptr;
}

JobNamespaces makeJobNamespaces() {
  KJ_SYSCALL(unshare(CLONE_NEWNS | CLONE_NEWIPC), "mount and IPC namespaces for a job");
  KJ_SYSCALL(mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr), "slave propagation");
  KJ_SYSCALL(mountPrivateTmpfs() ? 0 : -1, "private tmpfs mounts");
  return JobNamespaces{openOwnNamespace("mnt"), openOwnNamespace("ipc")};
}

MountNamespacePool::MountNamespacePool(uint target)
    : target(target), thread(startQuietThread([this]() { run(); })) {}

MountNamespacePool::~MountNamespacePool() noexcept(false) {
  state.lockExclusive()->stopping = true;
  thread = nullptr;  // joins
}

JobNamespaces MountNamespacePool::take() {
  auto lock = state.lockExclusive();
  if (lock->ready.empty()) return JobNamespaces();
  auto namespaces = kj::mv(lock->ready.back());
  lock->ready.removeLast();
  return namespaces;
}

void MountNamespacePool::run() {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 // setns() into a mount namespace needs a filesystem context of this thread's
                 // own, and each new namespace is copied from runnerd's, not from the last one.
                 KJ_SYSCALL(unshare(CLONE_FS));
                 auto homeMount = openOwnNamespace("mnt");
                 auto homeIpc = openOwnNamespace("ipc");
                 for (;;) {
                   {
                     auto lock = state.lockExclusive();
                     lock.wait([this](const State& state) {
                       return state.stopping || state.ready.size() < target;
                     });
                     if (lock->stopping) return;
                   }
                   auto made = makeJobNamespaces();
                   KJ_SYSCALL(setns(homeMount.get(), CLONE_NEWNS), "back to runnerd's mounts");
                   KJ_SYSCALL(setns(homeIpc.get(), CLONE_NEWIPC), "back to runnerd's IPC");
                   state.lockExclusive()->ready.add(kj::mv(made));
                 }
               })) {
    KJ_LOG(WARNING, "jobs make their mount namespaces themselves", *exception);
  }
}

}  // namespace runner::executors

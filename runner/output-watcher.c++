#include "runner/output-watcher.h"

#include <errno.h>
#include <kj/debug.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "runner/user-error.h"

namespace runner {

namespace {

kj::AutoCloseFd newInotify() {
  int fd;
  KJ_SYSCALL(fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  return kj::AutoCloseFd(fd);
}

}  // namespace

OutputWatcher::OutputWatcher(kj::UnixEventPort& eventPort)
    : inotifyFd(newInotify()),
      observer(eventPort, inotifyFd, kj::UnixEventPort::FdObserver::OBSERVE_READ),
      readLoop(readEvents().eagerlyEvaluate([](kj::Exception&& e) {
        KJ_LOG(ERROR, "inotify reader failed; followers of running jobs will stall", e);
      })) {}

OutputWatcher::~OutputWatcher() noexcept(false) {
  KJ_ASSERT(watches.size() == 0, "a Watch outlived its OutputWatcher") {
    break;
  }
}

kj::Own<OutputWatcher::Watch> OutputWatcher::watch(kj::StringPtr path) {
  int wd;
  KJ_SYSCALL_HANDLE_ERRORS(wd = inotify_add_watch(inotifyFd, path.cStr(), IN_MODIFY)) {
    case ENOSPC:
      // The host's bound, which the start that needs the watch reports (no path of the server's).
      throwUserError(ErrorKind::LIMIT,
                     "runnerd cannot follow the output of another job: the host's inotify watches "
                     "are used up (fs.inotify.max_user_watches); try again once jobs have ended");
    default:
      KJ_FAIL_SYSCALL("inotify_add_watch", error, path);
  }
  // The kernel hands out one watch descriptor per inode; a second Watch of the same file would
  // share it, which nothing in runner needs.
  KJ_REQUIRE(watches.find(wd) == nullptr, "file is already watched", path);
  auto result = kj::heap<Watch>(*this, wd);
  watches.insert(wd, result.get());
  return result;
}

kj::Promise<void> OutputWatcher::readEvents() {
  return observer.whenBecomesReadable().then([this]() {
    // Large enough for many events per read(); each is a struct inotify_event with no name,
    // since watches are on files rather than directories.
    alignas(struct inotify_event) char buffer[4096];
    for (;;) {
      ssize_t n = read(inotifyFd, buffer, sizeof(buffer));
      if (n < 0) {
        int error = errno;
        if (error == EINTR) continue;
        if (error == EAGAIN) break;
        KJ_FAIL_SYSCALL("read(inotify)", error);
      }
      for (char* p = buffer; p < buffer + n;) {
        auto* event = reinterpret_cast<struct inotify_event*>(p);
        if (event->mask & IN_Q_OVERFLOW) {
          // Events were dropped: wake everybody, they re-read anyway.
          for (auto& entry : watches) entry.value->wakeAll();
        } else KJ_IF_MAYBE (watch, watches.find(event->wd)) {
          (*watch)->wakeAll();
        }
        p += sizeof(struct inotify_event) + event->len;
      }
    }
    return readEvents();
  });
}

OutputWatcher::Watch::Watch(OutputWatcher& watcher, int wd)
    : watcher(watcher), wd(wd), pauses(kj::refcounted<Pauses>(this)) {}

OutputWatcher::Watch::~Watch() noexcept(false) {
  pauses->watch = nullptr;
  // The file may be gone (EINVAL once its inode is freed); nothing to do then.
  inotify_rm_watch(watcher.inotifyFd, wd);
  watcher.watches.erase(wd);
  wakeAll();
}

kj::Own<void> OutputWatcher::Watch::pause(int fd) {
  // The watch stays (the host's count of watches is not touched, so watching again cannot run
  // out of them); it only asks for an event writes never cause.
  if (pauses->count++ == 0 && !unpausable) {
    pauses->fd = fd;
    if (!setMask(IN_DELETE_SELF)) pauses->fd = -1;
  }
  return kj::heap(kj::defer([state = kj::addRef(*pauses)]() mutable {
    if (--state->count == 0 && state->watch != nullptr) state->watch->resume();
  }));
}

void OutputWatcher::Watch::resume() {
  if (pauses->fd >= 0) {
    setMask(IN_MODIFY);
    pauses->fd = -1;
  }
  // Whatever was written while paused.
  wakeAll();
}

bool OutputWatcher::Watch::setMask(uint32_t mask) {
  // inotify_add_watch() on a file already watched changes the mask of its watch in place; the
  // descriptor names the very file, whatever became of its path.
  auto path = kj::str("/proc/self/fd/", pauses->fd);
  int result = inotify_add_watch(watcher.inotifyFd, path.cStr(), mask);
  if (result == wd) return true;
  int error = errno;
  // With the descriptor open on the file, only the kernel's lack of memory can fail this. The
  // watch is then never paused again (one line in the log); a failed change leaves the mask as
  // it was, so only a failed resume leaves it deaf to writes until the job ends.
  unpausable = true;
  KJ_LOG(ERROR, "cannot change the watch of a job's output", path, mask, result,
         result < 0 ? strerror(error) : "another file");
  if (result >= 0) {
    // The descriptor names another file (a caller's mistake): what the call did to it is undone,
    // a watch it made removed, another job's watch set back to writes.
    if (watcher.watches.find(result) == nullptr) {
      inotify_rm_watch(watcher.inotifyFd, result);
    } else {
      inotify_add_watch(watcher.inotifyFd, path.cStr(), IN_MODIFY);
    }
  }
  return false;
}

kj::Promise<void> OutputWatcher::Watch::nextChange() {
  return changed.next();
}

void OutputWatcher::Watch::wakeAll() {
  changed.fire();
}

}  // namespace runner

#include "runner/output-watcher.h"

#include <errno.h>
#include <kj/debug.h>
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

OutputWatcher::Watch::Watch(OutputWatcher& watcher, int wd) : watcher(watcher), wd(wd) {}

OutputWatcher::Watch::~Watch() noexcept(false) {
  // The file may be gone (EINVAL once its inode is freed); nothing to do then.
  inotify_rm_watch(watcher.inotifyFd, wd);
  watcher.watches.erase(wd);
  wakeAll();
}

kj::Promise<void> OutputWatcher::Watch::nextChange() {
  return changed.next();
}

void OutputWatcher::Watch::wakeAll() {
  changed.fire();
}

}  // namespace runner

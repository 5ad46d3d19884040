#include "runner/supervisor-restart.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace runner {
namespace {

kj::Maybe<int> parseFd(kj::ArrayPtr<const char> text) {
  if (text.size() == 0 || text.size() > 9) return nullptr;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return nullptr;
    value = value * 10 + (c - '0');
  }
  return value;
}

void setCloseOnExec(int fd, bool on) {
  int flags;
  KJ_SYSCALL(flags = fcntl(fd, F_GETFD));
  KJ_SYSCALL(fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC));
}

}  // namespace

kj::Maybe<InheritedFds> takeInheritedFds() {
  const char* text = getenv(INHERITED_ENV.cStr());
  if (text == nullptr) return nullptr;
  kj::String value = kj::str(text);
  // Nothing started from here on (a job, another re-exec) sees it.
  unsetenv(INHERITED_ENV.cStr());
  auto comma = KJ_REQUIRE_NONNULL(value.findFirst(','), "malformed", INHERITED_ENV, value);
  auto listenFd = KJ_REQUIRE_NONNULL(parseFd(value.slice(0, comma)), INHERITED_ENV, value);
  auto pidFd = KJ_REQUIRE_NONNULL(parseFd(value.slice(comma + 1)), INHERITED_ENV, value);
  int listening = 0;
  socklen_t length = sizeof(listening);
  KJ_SYSCALL(getsockopt(listenFd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length),
             "the listening socket handed over by the previous image");
  KJ_REQUIRE(listening, "the socket handed over by the previous image does not listen");
  setCloseOnExec(listenFd, true);
  setCloseOnExec(pidFd, true);
  return InheritedFds{kj::AutoCloseFd(listenFd), kj::AutoCloseFd(pidFd)};
}

kj::Promise<void> checkBinaryStarts(kj::UnixEventPort& eventPort, kj::Timer& timer,
                                    kj::StringPtr exe, kj::Duration deadline) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  KJ_DEFER(posix_spawnattr_destroy(&attributes));
  // KJ blocks the signals it captures; the check must not start with them blocked.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  char* argv[] = {const_cast<char*>(exe.cStr()), const_cast<char*>("--version"), nullptr};
  pid_t pid;
  int error = posix_spawn(&pid, exe.cStr(), &actions, &attributes, argv, environ);
  if (error != 0) {
    return KJ_EXCEPTION(FAILED, kj::str("cannot start ", exe, ": ", strerror(error)));
  }
  int fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) {
    int error = errno;
    waitpid(pid, nullptr, 0);
    return KJ_EXCEPTION(FAILED, kj::str("cannot watch ", exe, ": ", strerror(error)));
  }
  struct Check {
    pid_t pid;
    kj::AutoCloseFd pidfd;
    kj::UnixEventPort::FdObserver observer;
    bool reaped = false;
    Check(kj::UnixEventPort& port, pid_t pid, int fd)
        : pid(pid), pidfd(fd), observer(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ) {}
    ~Check() {
      if (reaped) return;
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  };
  auto check = kj::heap<Check>(eventPort, pid, fd);
  auto& c = *check;
  return c.observer.whenBecomesReadable()
      .then([&c, exe = kj::str(exe)]() {
        siginfo_t info = {};
        KJ_SYSCALL(waitid(P_PIDFD, c.pidfd.get(), &info, WEXITED));
        c.reaped = true;
        if (info.si_code != CLD_EXITED || info.si_status != 0) {
          KJ_FAIL_REQUIRE(kj::str(exe, " --version did not exit 0 (",
                                  info.si_code == CLD_EXITED ? "exit " : "signal ", info.si_status,
                                  ")"));
        }
      })
      .exclusiveJoin(timer.afterDelay(deadline).then([exe = kj::str(exe), deadline]() {
        KJ_FAIL_REQUIRE(kj::str(exe, " --version did not answer within ", deadline));
      }))
      .attach(kj::mv(check));
}

kj::String ownBinaryPath() {
  char path[4096];
  ssize_t n;
  KJ_SYSCALL(n = readlink("/proc/self/exe", path, sizeof(path) - 1));
  return kj::heapString(path, n);
}

int execSelf(kj::StringPtr exe, kj::ArrayPtr<char* const> argv, int listenFd, int pidFd) {
  auto value = kj::str(listenFd, ",", pidFd);
  setCloseOnExec(listenFd, false);
  setCloseOnExec(pidFd, false);
  setenv(INHERITED_ENV.cStr(), value.cStr(), 1);
  auto args = kj::heapArrayBuilder<char*>(argv.size() + 1);
  for (auto arg : argv) args.add(arg);
  args.add(nullptr);
  execve(exe.cStr(), args.begin(), environ);
  int error = errno;
  unsetenv(INHERITED_ENV.cStr());
  setCloseOnExec(listenFd, true);
  setCloseOnExec(pidFd, true);
  return error;
}

}  // namespace runner

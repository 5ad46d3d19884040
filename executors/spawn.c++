#include "executors/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executors/spawn-child.h"

namespace runner::executors {
namespace {

// Directories of the job's PATH that are searched at most. Each is one execve() between the
// switch to the job's user and the job's start; a long PATH must not make a launch slow.
constexpr size_t MAX_PATH_ENTRIES = 64;

// ---------------------------------------------------------------------------------------------
// The parent side.

void requireNoNul(kj::StringPtr text, const char* what) {
  KJ_REQUIRE(strlen(text.cStr()) == text.size(), "argument contains a NUL byte", what, text);
}

// A null-terminated array of pointers into `strings`, for execve().
kj::Array<const char*> cStringArray(kj::ArrayPtr<const kj::String> strings) {
  auto result = kj::heapArrayBuilder<const char*>(strings.size() + 1);
  for (auto& string : strings) result.add(string.cStr());
  result.add(nullptr);
  return result.finish();
}

// The PATH of the job's own environment, or the POSIX default when it has none.
kj::StringPtr jobSearchPath(kj::ArrayPtr<const kj::String> env) {
  for (auto& entry : env) {
    if (entry.startsWith("PATH=")) return entry.slice(strlen("PATH="));
  }
  return "/usr/bin:/bin";
}

kj::Array<kj::String> execCandidates(kj::StringPtr command, kj::StringPtr searchPath) {
  kj::Vector<kj::String> candidates;
  if (strchr(command.cStr(), '/') != nullptr) {
    candidates.add(kj::str(command));
    return candidates.releaseAsArray();
  }
  const char* start = searchPath.begin();
  for (;;) {
    const char* end = strchr(start, ':');
    if (end == nullptr) end = searchPath.end();
    auto directory = kj::arrayPtr(start, end);
    // An empty PATH entry means the working directory, as for execvpe().
    if (directory.size() == 0) {
      candidates.add(kj::str(command));
    } else {
      candidates.add(kj::str(directory, '/', command));
    }
    if (end == searchPath.end()) break;
    start = end + 1;
  }
  if (candidates.size() > MAX_PATH_ENTRIES) {
    KJ_FAIL_REQUIRE(kj::str("the job's PATH has ", candidates.size(), " directories; at most ",
                            MAX_PATH_ENTRIES, " are searched"));
  }
  return candidates.releaseAsArray();
}

// Returns `fd` itself, or a close-on-exec duplicate numbered 3 or above, so that the child
// can dup2() onto 0, 1 and 2 without overwriting it.
kj::AutoCloseFd aboveStdio(kj::AutoCloseFd fd) {
  if (fd.get() >= 3) return fd;
  int moved;
  KJ_SYSCALL(moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
  return kj::AutoCloseFd(moved);
}

// What describeStep() needs to name a failed step, kept after the request is gone.
struct StepNames {
  kj::String command;
  kj::String workingDir;
  uid_t uid;
  gid_t gid;
};

kj::String describeStep(Step step, const StepNames& names) {
  switch (step) {
    case Step::SIGNALS:
      return kj::str("reset signals");
    case Step::CGROUP:
      return kj::str("join cgroup");
    case Step::SESSION:
      return kj::str("setsid");
    case Step::STDIO:
      return kj::str("redirect stdio");
    case Step::CLOSE_FDS:
      return kj::str("close descriptors");
    case Step::LIMITS:
      return kj::str("reset resource limits");
    case Step::MOUNT_PRIVATE:
      return kj::str("make mounts private");
    case Step::MOUNT_PROC:
      return kj::str("mount /proc");
    case Step::LOOPBACK:
      return kj::str("bring up lo");
    case Step::SETGROUPS:
      return kj::str("setgroups");
    case Step::SETGID:
      return kj::str("setgid ", names.gid);
    case Step::SETUID:
      return kj::str("setuid ", names.uid);
    case Step::CHDIR:
      return kj::str("chdir ", names.workingDir);
    case Step::NO_NEW_PRIVS:
      return kj::str("set no_new_privs");
    case Step::EXEC:
      return kj::str("exec ", names.command);
  }
  return kj::str("step ", static_cast<int>(step));
}

// A child between clone3() and exec. Owns the read end of its error pipe and its pidfd until
// the launch resolves; destroyed unresolved (the launch was cancelled), it kills and reaps the
// child.
class PendingLaunch {
 public:
  PendingLaunch(kj::UnixEventPort& eventPort, pid_t pid, kj::AutoCloseFd pidfd,
                kj::AutoCloseFd errorRead, StepNames names)
      : eventPort(eventPort),
        pid(pid),
        pidfd(kj::mv(pidfd)),
        errorRead(kj::mv(errorRead)),
        errorObserver(eventPort, this->errorRead.get(),
                      kj::UnixEventPort::FdObserver::OBSERVE_READ),
        names(kj::mv(names)) {}

  ~PendingLaunch() noexcept(false) {
    if (done) return;
    // Cancelled: the child must not outlive the launch, nor stay a zombie. SIGKILL ends it even
    // when it is stopped, so the blocking reap is short.
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   killChild();
                   reap();
                 })) {
      KJ_LOG(ERROR, "could not reap a cancelled launch", pid, *exception);
    }
  }

  KJ_DISALLOW_COPY(PendingLaunch);

  // Resolves once the child has exec'd, failed, or been killed after `timeout`.
  kj::Promise<SpawnResult> result(kj::Timer& timer, kj::Duration timeout) {
    return readReport()
        .exclusiveJoin(timer.afterDelay(timeout).then([timeout]() {
          return Outcome{ETIMEDOUT, kj::str("the command did not start within ", timeout,
                                            " (it was stopped or is stuck before exec)")};
        }))
        .then([this](Outcome outcome) -> kj::Promise<SpawnResult> {
          KJ_IF_MAYBE (message, outcome.failure) {
            // A failed child has nothing left to do but exit, and a late one is killed: either
            // way SIGKILL makes sure that a stop cannot hold it, then the reap is prompt.
            killChild();
            return reapWhenExited().then(
                [failure = LaunchFailure{outcome.errorNumber, kj::mv(*message)}]() mutable
                -> SpawnResult { return kj::mv(failure); });
          }
          done = true;
          SpawnResult spawned = Spawned{pid, kj::mv(pidfd)};
          return kj::mv(spawned);
        });
  }

 private:
  kj::UnixEventPort& eventPort;
  pid_t pid;
  kj::AutoCloseFd pidfd;
  kj::AutoCloseFd errorRead;
  kj::UnixEventPort::FdObserver errorObserver;
  // Made only when needed: the pidfd of a started job is watched by its Process instead.
  kj::Maybe<kj::Own<kj::UnixEventPort::FdObserver>> exitObserver;
  StepNames names;
  // The child has been reaped, or handed over as Spawned.
  bool done = false;

  // How the wait for exec ended: no failure (it exec'd), or why the launch failed.
  struct Outcome {
    int errorNumber = 0;
    kj::Maybe<kj::String> failure;
  };

  // Reads the error pipe until end of file (the child exec'd) or a report of a failed step.
  kj::Promise<Outcome> readReport() {
    ChildError report;
    ssize_t n;
    KJ_NONBLOCKING_SYSCALL(n = read(errorRead.get(), &report, sizeof(report)), pid);
    if (n < 0) {
      // Edge-triggered: read until EAGAIN, then wait for the next change.
      return errorObserver.whenBecomesReadable().then([this]() { return readReport(); });
    }
    if (n == 0) return Outcome{};
    // One write() of fewer than PIPE_BUF bytes: all or nothing.
    KJ_ASSERT(n == sizeof(report), "short report from the child", n, pid);
    return Outcome{
        report.errorNumber,
        kj::str(describeStep(report.step, names), ": ", strerror(report.errorNumber)),
    };
  }

  void killChild() {
    KJ_SYSCALL_HANDLE_ERRORS(syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0)) {
      case ESRCH:  // already exited
        break;
      default:
        KJ_FAIL_SYSCALL("pidfd_send_signal", error, pid);
    }
  }

  // Waits (on the event loop) for the child to exit, then reaps it.
  kj::Promise<void> reapWhenExited() {
    if (exitObserver == nullptr) {
      exitObserver = kj::heap<kj::UnixEventPort::FdObserver>(
          eventPort, pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
    }
    siginfo_t info = {};
    KJ_SYSCALL(waitid(static_cast<idtype_t>(P_PIDFD), pidfd.get(), &info, WEXITED | WNOHANG), pid);
    if (info.si_pid != 0) {
      done = true;
      return kj::READY_NOW;
    }
    auto& observer = *KJ_ASSERT_NONNULL(exitObserver);
    return observer.whenBecomesReadable().then([this]() { return reapWhenExited(); });
  }

  void reap() {
    siginfo_t info = {};
    KJ_SYSCALL(waitid(static_cast<idtype_t>(P_PIDFD), pidfd.get(), &info, WEXITED), pid);
    done = true;
  }
};

}  // namespace

kj::Promise<SpawnResult> spawn(kj::UnixEventPort& eventPort, kj::Timer& timer,
                               const SpawnOptions& options) {
  auto& request = options.request;
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
  for (auto& arg : request.argv) requireNoNul(arg, "argv");
  for (auto& entry : request.env) {
    requireNoNul(entry, "env");
    KJ_REQUIRE(entry.findFirst('=') != nullptr, "environment entry is not NAME=value", entry);
  }
  requireNoNul(request.workingDir, "workingDir");
  KJ_REQUIRE(request.workingDir.startsWith("/"), "working directory must be an absolute path",
             request.workingDir);
  KJ_REQUIRE(request.outputFd >= 0, "no output descriptor", request.outputFd);

  auto& credentials = request.credentials;
  KJ_REQUIRE(credentials.uid != 0, "refusing to run a job as root (uid 0)", credentials.userName);
  KJ_REQUIRE(credentials.gid != 0, "refusing to run a job with group root (gid 0)",
             credentials.userName);
  bool switchUser = geteuid() == 0;
  if (!switchUser) {
    KJ_REQUIRE(credentials.uid == geteuid() && credentials.gid == getegid(),
               "an unprivileged runnerd can only run jobs as its own user", credentials.uid,
               credentials.gid);
  }

  auto argv = cStringArray(request.argv);
  auto envp = cStringArray(request.env);
  auto candidates = execCandidates(request.argv[0], jobSearchPath(request.env));
  auto candidatePointers = KJ_MAP(candidate, candidates) {
    return candidate.cStr();
  };

  int fd;
  KJ_SYSCALL(fd = open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto devNull = aboveStdio(kj::AutoCloseFd(fd));
  int pipeFds[2];
  KJ_SYSCALL(pipe2(pipeFds, O_CLOEXEC));
  auto errorRead = kj::AutoCloseFd(pipeFds[0]);
  // Only the parent's end: the child's write of a report must not fail with EAGAIN, and it
  // cannot block either, since the pipe is empty and the report small.
  KJ_SYSCALL(fcntl(errorRead.get(), F_SETFL, O_NONBLOCK));
  auto errorWrite = aboveStdio(kj::AutoCloseFd(pipeFds[1]));

  auto& isolation = request.isolation;
  ChildPlan plan = {
      .argv = argv.begin(),
      .envp = envp.begin(),
      .execCandidates = candidatePointers,
      .workingDir = request.workingDir.cStr(),
      .devNullFd = devNull.get(),
      .outputFd = request.outputFd,
      .errorFd = errorWrite.get(),
      .cgroupProcsFds = options.cgroupProcsFds,
      // A PID namespace needs its own mount namespace for its own /proc.
      .makeMountsPrivate = isolation.mount || isolation.pid,
      .mountProc = isolation.pid,
      .bringUpLoopback = isolation.net,
      .switchUser = switchUser,
      .uid = credentials.uid,
      .gid = credentials.gid,
      .supplementaryGroups = credentials.supplementaryGroups,
  };

  int pidfd = -1;
  int namespaceFlags = 0;
  if (isolation.pid) namespaceFlags |= CLONE_NEWPID;
  if (plan.makeMountsPrivate) namespaceFlags |= CLONE_NEWNS;
  if (isolation.net) namespaceFlags |= CLONE_NEWNET;
  // clone3() forks: the child gets a copy of the parent's memory and descriptors and shares
  // neither, so nothing it does (or has done to it, such as a SIGSTOP) can hold the parent.
  // CLONE_CLEAR_SIGHAND resets the parent's handlers at once, so none of them can run in the
  // child before its first step resets everything else.
  struct clone_args args = {};
  args.flags = CLONE_PIDFD | CLONE_CLEAR_SIGHAND | namespaceFlags;
  KJ_IF_MAYBE (cgroupFd, options.cgroupDirFd) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = *cgroupFd;
  }
  args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long cloned = syscall(SYS_clone3, &args, sizeof(args));
  if (cloned == 0) {
    KJ_DEFER(_exit(127));
    runChild(plan);
  }
  if (cloned < 0) {
    KJ_FAIL_SYSCALL("clone3", errno, request.argv[0], isolation.pid, isolation.mount,
                    isolation.net);
  }

  pid_t pid = cloned;
  kj::AutoCloseFd pidfdOwner(pidfd);
  errorWrite = nullptr;

  kj::Own<PendingLaunch> launch;
  {
    // Until the pending launch owns it, a failure must not leave the child behind.
    KJ_ON_SCOPE_FAILURE({
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    });
    launch =
        kj::heap<PendingLaunch>(eventPort, pid, kj::mv(pidfdOwner), kj::mv(errorRead),
                                StepNames{kj::str(request.argv[0]), kj::str(request.workingDir),
                                          credentials.uid, credentials.gid});
  }
  auto result = launch->result(timer, options.launchTimeout);
  return result.attach(kj::mv(launch));
}

kj::Maybe<uint64_t> processStartTime(pid_t pid) {
  KJ_REQUIRE(pid > 0, "not a process id", pid);
  auto path = kj::str("/proc/", pid, "/stat");
  int fd;
  KJ_SYSCALL_HANDLE_ERRORS(fd = open(path.cStr(), O_RDONLY | O_CLOEXEC)) {
    case ENOENT:
    case ESRCH:
      return nullptr;
    default:
      KJ_FAIL_SYSCALL("open", error, path);
  }
  kj::AutoCloseFd file(fd);

  // comm is at most 16 bytes and the other fields are numbers: the line fits.
  char buffer[2048];
  size_t size = 0;
  for (;;) {
    ssize_t n;
    KJ_SYSCALL_HANDLE_ERRORS(n = read(file.get(), buffer + size, sizeof(buffer) - 1 - size)) {
      case ESRCH:
        return nullptr;
      default:
        KJ_FAIL_SYSCALL("read", error, path);
    }
    size += n;
    if (n == 0 || size == sizeof(buffer) - 1) break;
  }
  buffer[size] = '\0';

  // Field 2 is "(comm)" and comm may contain spaces and ')': fields 3 and on follow the last
  // ')'. Field 22 is then the 20th space-separated field after it.
  const char* cursor = strrchr(buffer, ')');
  KJ_ASSERT(cursor != nullptr, "unexpected /proc/PID/stat format", path);
  ++cursor;
  for (int field = 3; field <= 22; ++field) {
    KJ_ASSERT(*cursor == ' ', "unexpected /proc/PID/stat format", path, field);
    ++cursor;
    if (field < 22) {
      cursor = strchr(cursor, ' ');
      KJ_ASSERT(cursor != nullptr, "unexpected /proc/PID/stat format", path, field);
    }
  }
  char* end;
  errno = 0;
  unsigned long long startTime = strtoull(cursor, &end, 10);
  KJ_ASSERT(end != cursor && (*end == ' ' || *end == '\n') && errno == 0,
            "unexpected /proc/PID/stat format", path);
  return uint64_t(startTime);
}

}  // namespace runner::executors

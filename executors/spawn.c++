#include "executors/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/thread.h>
#include <kj/vector.h>
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
#include <time.h>
#include <unistd.h>


#include "executors/spawn-child.h"
#include "executors/threads.h"

namespace runner::executors {
namespace {

// ---------------------------------------------------------------------------------------------
// The parent side.

void requireNoNul(kj::StringPtr text, const char* what) {
  KJ_REQUIRE(strlen(text.cStr()) == text.size(), "argument contains a NUL byte", what, text);
}

kj::Array<kj::String> copyStrings(kj::ArrayPtr<const kj::String> strings) {
  return KJ_MAP(string, strings) {
    return kj::str(string);
  };
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

// What describeStep() needs to name a failed step.
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
    case Step::MOUNT_TMPFS:
      return kj::str("mount a private /tmp, /var/tmp, /dev/shm or /run/lock");
    case Step::KEYRING:
      return kj::str("join a session keyring of its own");
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
    case Step::CANCELLED:
      return kj::str("start");
    case Step::CHDIR:
      return kj::str("chdir ", names.workingDir);
    case Step::NO_NEW_PRIVS:
      return kj::str("set no_new_privs");
    case Step::EXEC:
      return kj::str("exec ", names.command);
  }
  return kj::str("step ", static_cast<int>(step));
}

// The child's stack, in the frame of the launcher thread that waits for it. The child side
// uses little: no allocation, a few frames of plain C calls.
constexpr size_t CHILD_STACK_BYTES = 64 * 1024;

// How often a launch past its deadline is killed again, for a child that was still being
// created the first time.
constexpr kj::Duration KILL_AGAIN_INTERVAL = 1 * kj::SECONDS;

// The child's entry point under clone(): its own stack, the parent's memory.
int childMain(void* plan) {
  runChild(*static_cast<const ChildPlan*>(plan));
  _exit(127);
}

void killByPidfd(int pidfd, pid_t pid) {
  KJ_SYSCALL_HANDLE_ERRORS(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0)) {
    case ESRCH:  // already exited
      break;
    default:
      KJ_FAIL_SYSCALL("pidfd_send_signal", error, pid);
  }
}

// Whether fs.suid_dumpable lets a process that switched to another user be traced by that
// user. The child shares runnerd's memory until exec, and setresuid() makes that memory
// dumpable per this setting: at 1 ("debug") any process of the run-as user could trace the
// child and write into runnerd. At 0 or 2 only a process with CAP_SYS_PTRACE can.
bool switchedUserIsTraceable() {
  // Opened once, read at every start: the setting may change at any time.
  static const int fd = open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no /proc/sys: the kernel's default, 0
  char value = '0';
  if (pread(fd, &value, 1, 0) != 1) return false;
  return value == '1';
}

// One launch. Owns everything the child reads until it has exec'd or exited, and the parts of
// the child's state that three threads see: the event loop (which owns this object), the
// launcher thread that creates the child and waits for it, and the child.
class Launch {
 public:
  Launch(SpawnOptions& options, bool switchUser)
      : beforeStart(kj::mv(options.beforeStart)),
        argvStrings(copyStrings(options.request.argv)),
        envStrings(copyStrings(options.request.env)),
        argv(cStringArray(argvStrings)),
        envp(cStringArray(envStrings)),
        candidates(execCandidates(options.request.argv[0], jobSearchPath(options.request.env))),
        candidatePointers(KJ_MAP(candidate, candidates) { return candidate.cStr(); }),
        workingDir(kj::str(options.request.workingDir)),
        groups(kj::heapArray(options.request.credentials.supplementaryGroups.asPtr())),
        cgroupProcsFds(kj::heapArray(options.cgroupProcsFds)),
        names{kj::str(options.request.argv[0]), kj::str(options.request.workingDir),
              options.request.credentials.uid, options.request.credentials.gid} {
    auto& request = options.request;
    int fd;
    KJ_SYSCALL(fd = open("/dev/null", O_RDONLY | O_CLOEXEC));
    devNull = aboveStdio(kj::AutoCloseFd(fd));
    // The caller's descriptor may be closed before the child is created.
    KJ_SYSCALL(fd = fcntl(request.outputFd, F_DUPFD_CLOEXEC, 3), request.outputFd);
    output = kj::AutoCloseFd(fd);

    auto& isolation = request.isolation;
    plan = {
        .argv = argv.begin(),
        .envp = envp.begin(),
        .execCandidates = candidatePointers,
        .workingDir = workingDir.cStr(),
        .devNullFd = devNull.get(),
        .outputFd = output.get(),
        .cgroupProcsFds = cgroupProcsFds,
        .report = &report,
        .cancelled = &cancelled,
        // A PID namespace needs its own mount namespace for its own /proc.
        .makeMountsPrivate = isolation.mount || isolation.pid,
        // Only root can mount; an unprivileged runnerd's jobs share the host's.
        .privateTmp = switchUser,
        // Only root can hand out keyrings that do not count against the job user's quota.
        .ownKeyring = switchUser,
        .mountProc = isolation.pid,
        .bringUpLoopback = isolation.net,
        .switchUser = switchUser,
        .uid = request.credentials.uid,
        .gid = request.credentials.gid,
        .supplementaryGroups = groups,
    };
    if (isolation.pid) namespaceFlags |= CLONE_NEWPID;
    if (plan.makeMountsPrivate || plan.privateTmp) namespaceFlags |= CLONE_NEWNS;
    if (switchUser) namespaceFlags |= CLONE_NEWIPC;
    if (isolation.net) namespaceFlags |= CLONE_NEWNET;
  }

  ~Launch() noexcept(false) {
    if (!finished) {
      // Only when the Launcher itself goes with this launch pending (see abandon()): make sure
      // the wait ends, then wait for the launcher thread to let go of it.
      KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { giveUp(); })) {
        KJ_LOG(ERROR, "could not kill a child whose launch was cancelled", *exception);
      }
      launched = nullptr;
      if (pid > 0) pidfdOwner = kj::AutoCloseFd(pidfd);
    }
    if (handedOver || pid <= 0) return;
    // Cancelled, or failed: the child must not outlive the launch, nor stay a zombie. It is
    // past vfork (dead, dying, or exec'd just before being cancelled), and SIGKILL ends it even
    // when stopped, so the blocking reap is short.
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   killByPidfd(pidfdOwner.get(), pid);
                   siginfo_t info = {};
                   KJ_SYSCALL(
                       waitid(static_cast<idtype_t>(P_PIDFD), pidfdOwner.get(), &info, WEXITED),
                       pid);
                 })) {
      KJ_LOG(ERROR, "could not reap a child whose launch failed", pid, *exception);
    }
  }

  KJ_DISALLOW_COPY(Launch);

  bool isFinished() const { return finished; }

  // The launch was cancelled before its launcher thread was done with it. Rather than wait for
  // that thread here (on the event loop), kill the child now and again every second until the
  // thread is done, then reap it: `launcher` keeps `self` until then.
  // Called from a destructor: throws nothing.
  static void abandon(kj::Own<Launch> self, Launcher& launcher, kj::Timer& timer) {
    auto& launch = *self;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { launch.giveUp(); })) {
      KJ_LOG(ERROR, "could not kill a child whose launch was cancelled", *exception);
    }
    auto done = KJ_ASSERT_NONNULL(launch.launched).addBranch();
    auto killing = timer.afterDelay(KILL_AGAIN_INTERVAL)
                       .then([&launch, &timer]() { return launch.killUntilCreated(timer); })
                       .eagerlyEvaluate(nullptr);
    launcher.keepUntilDone(done.attach(kj::mv(killing)).then([self = kj::mv(self)]() mutable {
      self->finished = true;
      if (self->pid > 0) self->pidfdOwner = kj::AutoCloseFd(self->pidfd);
      // Destroying it kills and reaps the child.
    }));
  }

  kj::Promise<SpawnResult> start(Launcher& launcher, kj::Timer& timer, kj::Duration timeout) {
    launched = launcher.run([this]() { createChild(); }).fork();
    auto& forked = KJ_ASSERT_NONNULL(launched);
    return forked.addBranch()
        .exclusiveJoin(expire(timer, timeout, timeout))
        .then([this, timeout]() {
          finished = true;
          return outcome(timeout);
        });
  }

 private:
  // The caller's, run on the launcher thread before the child is created (SpawnOptions).
  kj::Maybe<kj::Function<kj::Array<int>()>> beforeStart;
  // What it threw, for the event loop once the launcher thread is done.
  kj::Maybe<kj::Exception> beforeStartFailure;
  // Set by the launcher thread while it runs `beforeStart`, and when it returned (CLOCK_MONOTONIC,
  // in nanoseconds); read by the event loop.
  bool inBeforeStart = false;
  int64_t beforeStartEnded = 0;

  // Gives up on the child `timeout` after `beforeStart` returned (or after the start, without
  // one): the deadline is the child's, not the caller's step's.
  kj::Promise<void> expire(kj::Timer& timer, kj::Duration delay, kj::Duration timeout) {
    return timer.afterDelay(delay).then([this, &timer, timeout]() -> kj::Promise<void> {
      if (__atomic_load_n(&inBeforeStart, __ATOMIC_SEQ_CST)) return expire(timer, timeout, timeout);
      int64_t ended = __atomic_load_n(&beforeStartEnded, __ATOMIC_SEQ_CST);
      if (ended != 0) {
        int64_t due = ended + timeout / kj::NANOSECONDS;
        int64_t now = monotonicNanos();
        if (now < due) return expire(timer, (due - now) * kj::NANOSECONDS, timeout);
      }
      timedOut = true;
      return killUntilCreated(timer);
    });
  }

  static int64_t monotonicNanos() {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return int64_t(now.tv_sec) * 1000000000 + now.tv_nsec;
  }

  // What the child reads. The request's strings may be gone before the child is created.
  kj::Array<kj::String> argvStrings;
  kj::Array<kj::String> envStrings;
  kj::Array<const char*> argv;
  kj::Array<const char*> envp;
  kj::Array<kj::String> candidates;
  kj::Array<const char*> candidatePointers;
  kj::String workingDir;
  kj::Array<gid_t> groups;
  // Replaced by the launcher thread with what `beforeStart` returns, before the child exists.
  kj::Array<int> cgroupProcsFds;
  kj::AutoCloseFd devNull;
  kj::AutoCloseFd output;
  ChildPlan plan;
  int namespaceFlags = 0;

  // Written by the child (a failed step), the kernel (the pidfd, at clone time) and the launcher
  // thread (the pid, once the child has exec'd or exited); read by the event loop once the
  // launcher thread is done, except `pidfd`, which the event loop may read at any time to kill.
  ChildError report = {};
  int pidfd = -1;
  pid_t pid = 0;
  int cloneError = 0;
  // Set by the event loop, read by the launcher thread and the child.
  bool cancelled = false;

  // The event loop's own.
  StepNames names;
  kj::Maybe<kj::ForkedPromise<void>> launched;
  kj::AutoCloseFd pidfdOwner;
  bool timedOut = false;
  bool finished = false;  // the launcher thread is done
  bool handedOver = false;

  // On a launcher thread: creates the child and waits until it has exec'd or exited.
  void createChild() {
    if (__atomic_load_n(&cancelled, __ATOMIC_SEQ_CST)) return;
    KJ_IF_MAYBE (first, beforeStart) {
      __atomic_store_n(&inBeforeStart, true, __ATOMIC_SEQ_CST);
      beforeStartFailure = kj::runCatchingExceptions([&]() {
        auto fds = (*first)();
        if (fds.size() > 0) {
          cgroupProcsFds = kj::mv(fds);
          plan.cgroupProcsFds = cgroupProcsFds;
        }
      });
      __atomic_store_n(&beforeStartEnded, monotonicNanos(), __ATOMIC_SEQ_CST);
      __atomic_store_n(&inBeforeStart, false, __ATOMIC_SEQ_CST);
      if (beforeStartFailure != nullptr) return;
      // Cancelled while it ran: no child.
      if (__atomic_load_n(&cancelled, __ATOMIC_SEQ_CST)) return;
    }
    // Launcher threads block every signal, so the child starts with all of them blocked and
    // no handler of runnerd's can run in it before its first step resets them.
    alignas(16) kj::byte stack[CHILD_STACK_BYTES];
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | namespaceFlags | SIGCHLD;
    int result = clone(childMain, stack + sizeof(stack), flags, &plan, &pidfd);
    if (result < 0) {
      cloneError = errno;
      // The kernel may have published a descriptor number before failing; it is free again.
      __atomic_store_n(&pidfd, -1, __ATOMIC_SEQ_CST);
    } else {
      pid = result;
    }
  }

  // Stops a child that is past its deadline. One not yet created cannot exec any more; one
  // created but not yet killable by pidfd sees `cancelled` before it could be stopped.
  void giveUp() {
    __atomic_store_n(&cancelled, true, __ATOMIC_SEQ_CST);
    int fd = __atomic_load_n(&pidfd, __ATOMIC_SEQ_CST);
    if (fd < 0) return;
    // The kernel publishes the number before it installs the descriptor: EBADF means "not
    // yet", and the next round kills it.
    if (syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0) < 0 && errno != ESRCH &&
        errno != EBADF) {
      KJ_FAIL_SYSCALL("pidfd_send_signal", errno, names.command);
    }
  }

  kj::Promise<void> killUntilCreated(kj::Timer& timer) {
    giveUp();
    return timer.afterDelay(KILL_AGAIN_INTERVAL).then([this, &timer]() {
      return killUntilCreated(timer);
    });
  }

  SpawnResult outcome(kj::Duration timeout) {
    KJ_IF_MAYBE (failure, beforeStartFailure) {
      kj::throwFatalException(kj::mv(*failure));
    }
    if (cloneError != 0) {
      KJ_FAIL_SYSCALL("clone", cloneError, names.command, namespaceFlags);
    }
    auto timeoutFailure = [&]() {
      return LaunchFailure{ETIMEDOUT, kj::str("the command did not start within ", timeout,
                                              " (it was stopped or is stuck before exec)")};
    };
    if (pid <= 0) return timeoutFailure();  // given up before the child was created
    pidfdOwner = kj::AutoCloseFd(pidfd);
    if (report.errorNumber != 0 && report.step != Step::CANCELLED) {
      return LaunchFailure{report.errorNumber, kj::str(describeStep(report.step, names), ": ",
                                                       strerror(report.errorNumber))};
    }
    // Killed at the deadline (or it noticed and gave up itself); the destructor reaps it.
    if (timedOut || report.errorNumber != 0) return timeoutFailure();
    handedOver = true;
    return Spawned{pid, kj::mv(pidfdOwner)};
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launcher

class Launcher::Worker {
 public:
  Worker() : thread(startQuietThread([this]() { loop(); })) {
    auto lock = state.lockExclusive();
    lock.wait([](const State& state) { return state.executor != nullptr; });
  }

  ~Worker() noexcept(false) {
    executor().executeSync([this]() { KJ_ASSERT_NONNULL(stop)->fulfill(); });
    thread = nullptr;  // joins
  }

  KJ_DISALLOW_COPY(Worker);

  const kj::Executor& executor() {
    auto lock = state.lockExclusive();
    return *KJ_ASSERT_NONNULL(lock->executor);
  }

  uint busy = 0;  // the event loop's: launches in flight on this thread

 private:
  struct State {
    kj::Maybe<kj::Own<const kj::Executor>> executor;
  };
  kj::MutexGuarded<State> state;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> stop;  // the thread's own
  kj::Own<kj::Thread> thread;

  void loop() {
    kj::EventLoop eventLoop;
    kj::WaitScope waitScope(eventLoop);
    auto paf = kj::newPromiseAndFulfiller<void>();
    stop = kj::mv(paf.fulfiller);
    state.lockExclusive()->executor = kj::getCurrentThreadExecutor().addRef();
    paf.promise.wait(waitScope);
    stop = nullptr;
  }
};

Launcher::Launcher(uint threads) : threadCount(threads), abandoned(*this) {
  KJ_REQUIRE(threads > 0, "a launcher needs a thread");
}

Launcher::~Launcher() noexcept(false) {}

void Launcher::keepUntilDone(kj::Promise<void> cleanup) {
  abandoned.add(kj::mv(cleanup));
}

void Launcher::taskFailed(kj::Exception&& exception) {
  KJ_LOG(ERROR, "cleaning up a cancelled launch failed", exception);
}

kj::Promise<void> Launcher::run(kj::Function<void()> func) {
  if (workers.empty()) {
    for (uint i = 0; i < threadCount; ++i) workers.add(kj::heap<Worker>());
  }
  Worker* idlest = workers[0];
  for (auto& worker : workers) {
    if (worker->busy < idlest->busy) idlest = worker;
  }
  ++idlest->busy;
  return idlest->executor().executeAsync(kj::mv(func)).attach(kj::defer([idlest]() {
    --idlest->busy;
  }));
}

// ---------------------------------------------------------------------------------------------

kj::Promise<SpawnResult> spawn(Launcher& launcher, kj::Timer& timer, SpawnOptions&& options) {
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

  if (switchUser && switchedUserIsTraceable()) {
    KJ_FAIL_REQUIRE(
        "fs.suid_dumpable is 1: the job user could trace a starting job's process, which shares "
        "runnerd's memory; set it to 0 (the default) or 2");
  }

  auto launch = kj::heap<Launch>(options, switchUser);
  auto result = launch->start(launcher, timer, options.launchTimeout);
  // Cancelled before the launcher thread is done: the Launcher keeps the launch until then,
  // so that the event loop never waits for a child.
  return result.attach(kj::defer([launch = kj::mv(launch), &launcher, &timer]() mutable {
    if (!launch->isFinished()) Launch::abandon(kj::mv(launch), launcher, timer);
  }));
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

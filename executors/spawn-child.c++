#include "executors/spawn-child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace runner::executors {

namespace {

// ---------------------------------------------------------------------------------------------
// The child side. Plain C, async-signal-safe calls only: the child runs in the memory of a
// multi-threaded server whose other threads go on running, and whose locks they may hold. It
// touches only its own stack, the plan, and the errno of the launcher thread, which waits.

void reportFailure(const ChildPlan& plan, Step step, int errorNumber) {
  plan.report->step = step;
  // Never 0, which would read as success.
  plan.report->errorNumber = errorNumber != 0 ? errorNumber : EIO;
}

bool resetSignals() {
  // The child starts with runnerd's handlers (which must never run here: they would act on
  // runnerd's memory) and its launcher thread's mask, every signal blocked but glibc's own two
  // real-time signals, which nothing sends it. KJ ignores SIGPIPE, and runnerd's own parent may
  // have left others ignored (Bazel leaves 32 and 33 ignored); both would survive exec. glibc's
  // sigaction() refuses the two real-time signals it keeps for itself, so this asks the kernel
  // directly: an all-zero kernel sigaction is SIG_DFL with no flags and an empty mask, whatever
  // the architecture's layout of that struct. Only then is the mask cleared.
  uint64_t defaultAction[4] = {};
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    if (syscall(SYS_rt_sigaction, signal, defaultAction, nullptr, (NSIG - 1) / 8) < 0) {
      return false;
    }
  }
  sigset_t none;
  sigemptyset(&none);
  return sigprocmask(SIG_SETMASK, &none, nullptr) == 0;
}

bool joinCgroups(const ChildPlan& plan) {
  for (int fd : plan.cgroupProcsFds) {
    if (write(fd, "0", 1) != 1) return false;
  }
  return true;
}

bool redirectStdio(const ChildPlan& plan) {
  int output = plan.outputFd;
  if (output < 3) {
    // Move it out of the way of the descriptors it is about to become.
    output = fcntl(output, F_DUPFD_CLOEXEC, 3);
    if (output < 0) return false;
  }
  return dup2(plan.devNullFd, STDIN_FILENO) == STDIN_FILENO &&
         dup2(output, STDOUT_FILENO) == STDOUT_FILENO &&
         dup2(output, STDERR_FILENO) == STDERR_FILENO;
}

bool closeOtherDescriptors() {
  return close_range(3, ~0U, 0) == 0;
}

bool bringUpLoopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct ifreq request = {};
  strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ioctl(fd, SIOCGIFFLAGS, &request) == 0;
  if (ok) {
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    ok = ioctl(fd, SIOCSIFFLAGS, &request) == 0;
  }
  int savedErrno = errno;
  close(fd);
  errno = savedErrno;
  return ok;
}

// What runnerd set up for itself must not leak into jobs: its raised descriptor limit (some
// programs walk every possible descriptor) and its umask.
bool resetProcessState() {
  umask(022);
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) < 0) return false;
  limit.rlim_cur = limit.rlim_max < JOB_NOFILE_SOFT_LIMIT ? limit.rlim_max : JOB_NOFILE_SOFT_LIMIT;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

// Tries each exec candidate like execvpe() does; returns only on failure, with errno set.
void execCommand(const ChildPlan& plan) {
  bool sawAccessDenied = false;
  int error = ENOENT;
  for (const char* path : plan.execCandidates) {
    execve(path, const_cast<char* const*>(plan.argv), const_cast<char* const*>(plan.envp));
    error = errno;
    if (error == EACCES) {
      sawAccessDenied = true;
    } else if (error != ENOENT && error != ENOTDIR && error != ESTALE && error != ENODEV &&
               error != ETIMEDOUT) {
      break;
    }
  }
  if (sawAccessDenied && (error == ENOENT || error == ENOTDIR)) error = EACCES;
  errno = error;
}

}  // namespace

bool mountPrivateTmpfs() {
  // One tmpfs (a superblock costs more to make and tear down than a bind mount) mounted on the
  // first directory, holding one subdirectory per directory, each bound onto its directory; the
  // first one's binding covers the tmpfs's root, so no job sees the others' subdirectories there.
  // The pages are charged to whoever writes them (a job's memory cgroup).
  constexpr size_t COUNT = sizeof(PRIVATE_TMPFS_MOUNTS) / sizeof(PRIVATE_TMPFS_MOUNTS[0]);
  const char* root = PRIVATE_TMPFS_MOUNTS[0];
  if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755") < 0) return false;
  // "/tmp/N": short enough for a fixed buffer.
  char sub[32];
  size_t length = strlen(root);
  static_assert(COUNT <= 10, "one digit per subdirectory");
  if (length + 3 > sizeof(sub)) {
    errno = ENAMETOOLONG;
    return false;
  }
  memcpy(sub, root, length);
  sub[length] = '/';
  sub[length + 2] = '\0';
  for (size_t i = COUNT; i-- > 0;) {
    sub[length + 1] = char('0' + i);
    // mkdir() applies the umask; the mode is set once more.
    if (mkdir(sub, 01777) < 0 || chmod(sub, 01777) < 0) return false;
    if (mount(sub, PRIVATE_TMPFS_MOUNTS[i], nullptr, MS_BIND, nullptr) < 0 && errno != ENOENT) {
      return false;
    }
  }
  return true;
}

void runChild(const ChildPlan& plan) {
  auto fail = [&plan](Step step) { reportFailure(plan, step, errno); };

  if (!resetSignals()) return fail(Step::SIGNALS);
  // Join v1 cgroups first, while still root, so that every later step is accounted there.
  if (!joinCgroups(plan)) return fail(Step::CGROUP);
  if (setsid() < 0) return fail(Step::SESSION);
  if (!redirectStdio(plan)) return fail(Step::STDIO);
  if (!closeOtherDescriptors()) return fail(Step::CLOSE_FDS);
  if (!resetProcessState()) return fail(Step::LIMITS);

  if (plan.makeMountsPrivate || plan.privateTmp) {
    unsigned long propagation = plan.makeMountsPrivate ? MS_PRIVATE : MS_SLAVE;
    if (mount(nullptr, "/", nullptr, MS_REC | propagation, nullptr) < 0) {
      return fail(Step::MOUNT_PRIVATE);
    }
  }
  if (plan.privateTmp && !mountPrivateTmpfs()) return fail(Step::MOUNT_TMPFS);
  if (plan.mountProc &&
      mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
    return fail(Step::MOUNT_PROC);
  }
  if (plan.bringUpLoopback && !bringUpLoopback()) return fail(Step::LOOPBACK);

  // As root, so that the keyring is charged to root's key quota rather than the job user's
  // (which a quick run of jobs could exhaust before the kernel collects their keyrings); the job
  // possesses it all the same, and nobody else does.
  if (plan.ownKeyring && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, nullptr) < 0) {
    return fail(Step::KEYRING);
  }

  if (plan.switchUser) {
    // Raw system calls: glibc's wrappers would try to change the credentials of every thread
    // of the parent, which it still believes exist; the kernel changes only this one, which
    // is all the child has.
    auto groups = plan.supplementaryGroups;
    if (syscall(SYS_setgroups, groups.size(), groups.begin()) < 0) return fail(Step::SETGROUPS);
    if (syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) < 0) return fail(Step::SETGID);
    if (syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) < 0) return fail(Step::SETUID);
  }

  if (__atomic_load_n(plan.cancelled, __ATOMIC_SEQ_CST)) {
    errno = ECANCELED;
    return fail(Step::CANCELLED);
  }

  // After dropping privileges, so that the job user must be able to reach its directory.
  if (chdir(plan.workingDir) < 0) return fail(Step::CHDIR);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return fail(Step::NO_NEW_PRIVS);

  execCommand(plan);
  fail(Step::EXEC);
}

}  // namespace runner::executors

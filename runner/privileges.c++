#include "runner/privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace runner {

DaemonUser daemonUser() {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[16384];
  getpwnam_r(DAEMON_USER.cStr(), &pw, buffer, sizeof(buffer), &found);
  if (found == nullptr) {
    KJ_FAIL_REQUIRE(kj::str("the system user '", DAEMON_USER, "', which a root runnerd becomes "
                            "after start-up, does not exist; scripts/install-deps creates it"));
  }
  if (found->pw_uid == 0 || found->pw_gid == 0) {
    KJ_FAIL_REQUIRE(kj::str("the user '", DAEMON_USER, "' is root (uid ", found->pw_uid, ", gid ",
                            found->pw_gid, "); runnerd must become an unprivileged user"));
  }
  return DaemonUser{found->pw_uid, found->pw_gid, kj::str(found->pw_name)};
}

void giveTo(kj::StringPtr path, const DaemonUser& user) {
  struct stat st;
  KJ_SYSCALL(lstat(path.cStr(), &st), path);
  if (S_ISLNK(st.st_mode)) {
    KJ_FAIL_REQUIRE(kj::str(path, " is a symbolic link; runnerd's files must not be"));
  }
  if (st.st_uid != user.uid || st.st_gid != user.gid) {
    KJ_SYSCALL(lchown(path.cStr(), user.uid, user.gid), path);
  }
}

void secureStateDirectory(kj::StringPtr stateDir, const DaemonUser& user) {
  int fd = open(stateDir.cStr(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    KJ_FAIL_REQUIRE(kj::str("--state-dir ", stateDir, " must be a directory: ", strerror(errno)));
  }
  kj::AutoCloseFd dir(fd);
  KJ_SYSCALL(fchown(fd, 0, 0), stateDir);
  KJ_SYSCALL(fchmod(fd, 0711), stateDir);

  auto database = kj::str(stateDir, '/', DATABASE_DIR);
  if (mkdirat(fd, DATABASE_DIR.cStr(), 0700) < 0 && errno != EEXIST) {
    KJ_FAIL_REQUIRE(kj::str("cannot create ", database, ": ", strerror(errno)));
  }
  int subFd = openat(fd, DATABASE_DIR.cStr(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (subFd < 0) {
    KJ_FAIL_REQUIRE(kj::str(database, " must be a directory: ", strerror(errno)));
  }
  kj::AutoCloseFd sub(subFd);
  KJ_SYSCALL(fchown(subFd, user.uid, user.gid), database);
  KJ_SYSCALL(fchmod(subFd, 0700), database);

  // What only root writes: a pid file anyone else made is not a supervisor's (a supervisor makes
  // its own), and a socket directory of anyone else's is refused.
  struct stat st;
  if (fstatat(fd, "supervisor.pid", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      (!S_ISREG(st.st_mode) || st.st_uid != 0)) {
    KJ_SYSCALL(unlinkat(fd, "supervisor.pid", 0), stateDir);
  }
  if (fstatat(fd, "supervisor", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      (!S_ISDIR(st.st_mode) || st.st_uid != 0)) {
    KJ_FAIL_REQUIRE(kj::str(stateDir, "/supervisor is not a directory of root's (owner uid ",
                            st.st_uid, "); remove it"));
  }

  // An older runnerd kept its database in the state directory itself.
  for (auto name : DATABASE_FILES) {
    if (fstatat(fd, name.cStr(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    auto path = kj::str(stateDir, '/', name);
    if (!S_ISREG(st.st_mode)) {
      KJ_FAIL_REQUIRE(kj::str(path, " is not a regular file; runnerd's database must be"));
    }
    if (fstatat(subFd, name.cStr(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      KJ_FAIL_REQUIRE(kj::str("both ", path, " and ", database, '/', name,
                              " exist; keep the one to use in ", database));
    }
    KJ_SYSCALL(renameat(fd, name.cStr(), subFd, name.cStr()), path, database);
  }
}

namespace {

int lastCapability() {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return CAP_LAST_CAP;
  char text[16] = {};
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  return n > 0 ? atoi(text) : CAP_LAST_CAP;
}

}  // namespace

void dropPrivileges(const DaemonUser& user) {
  // The bounding set first: dropping it needs CAP_SETPCAP, which the uid change takes away.
  for (int cap = 0; cap <= lastCapability(); cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
      KJ_FAIL_SYSCALL("prctl(PR_CAPBSET_DROP)", errno, cap);
    }
  }
  KJ_SYSCALL(setgroups(0, nullptr));
  KJ_SYSCALL(setresgid(user.gid, user.gid, user.gid));
  KJ_SYSCALL(setresuid(user.uid, user.uid, user.uid));
  // Leaving uid 0 cleared the permitted and effective sets; the inheritable one goes here.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  KJ_SYSCALL(syscall(SYS_capset, &header, data));
  KJ_SYSCALL(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));

  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  KJ_SYSCALL(getresuid(&ruid, &euid, &suid));
  KJ_SYSCALL(getresgid(&rgid, &egid, &sgid));
  KJ_ASSERT(ruid == user.uid && euid == user.uid && suid == user.uid, "uids did not change");
  KJ_ASSERT(rgid == user.gid && egid == user.gid && sgid == user.gid, "gids did not change");
  KJ_ASSERT(getgroups(0, nullptr) == 0, "supplementary groups remain");
  KJ_SYSCALL(syscall(SYS_capget, &header, data));
  for (auto& d : data) {
    KJ_ASSERT(d.effective == 0 && d.permitted == 0 && d.inheritable == 0, "capabilities remain");
  }
}

kj::String supervisorSocketPath(kj::StringPtr stateDir) {
  return kj::str(stateDir, "/supervisor/executor.sock");
}

kj::String supervisorBinaryBesideSelf() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  KJ_SYSCALL(n, "/proc/self/exe");
  self[n] = '\0';
  kj::StringPtr path(self, n);
  auto slash = path.findLast('/').orDefault(0);
  return kj::str(path.slice(0, slash), "/runner-supervisor");
}

namespace {

// Whether a supervisor runs on `stateDir`: it holds a lock on its pid file for its life.
bool supervisorRuns(kj::StringPtr stateDir) {
  auto path = kj::str(stateDir, "/supervisor.pid");
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  kj::AutoCloseFd owned(fd);
  return flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

// In the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void execSupervisor(const char* binary, char** argv, int pidPipe) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; s++) {
    if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
  }
  setsid();
  // A second fork: the supervisor is nobody's child but init's (or a subreaper's), so that
  // runnerd's end does not touch it.
  pid_t pid = fork();
  if (pid != 0) {
    if (pid > 0) {
      ssize_t ignored = write(pidPipe, &pid, sizeof(pid));
      (void)ignored;
    }
    _exit(pid > 0 ? 0 : 127);
  }
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
  }
  syscall(SYS_close_range, 3u, ~0u, 0u);
  execv(binary, argv);
  _exit(127);
}

}  // namespace

pid_t ensureSupervisor(kj::StringPtr stateDir, kj::StringPtr binary,
                       kj::ArrayPtr<const kj::String> args) {
  if (supervisorRuns(stateDir)) return 0;
  if (access(binary.cStr(), X_OK) < 0) {
    KJ_FAIL_REQUIRE(kj::str("no supervisor runs on ", stateDir, ", and runnerd cannot start one: ",
                            binary, ": ", strerror(errno)));
  }
  kj::Vector<char*> argv;
  argv.add(const_cast<char*>(binary.cStr()));
  for (auto& arg : args) argv.add(const_cast<char*>(arg.cStr()));
  argv.add(nullptr);

  int pipeFds[2];
  KJ_SYSCALL(pipe2(pipeFds, O_CLOEXEC));
  kj::AutoCloseFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  pid_t child;
  KJ_SYSCALL(child = fork());
  if (child == 0) execSupervisor(binary.cStr(), argv.begin(), writeEnd.get());
  writeEnd = nullptr;
  pid_t supervisor = 0;
  ssize_t n;
  do {
    n = read(readEnd.get(), &supervisor, sizeof(supervisor));
  } while (n < 0 && errno == EINTR);
  int status;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof(supervisor) || supervisor <= 0) {
    KJ_FAIL_REQUIRE(kj::str("cannot start the supervisor ", binary));
  }
  return supervisor;
}

}  // namespace runner

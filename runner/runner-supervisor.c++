// runner-supervisor: runs runnerd's jobs. It serves this host's executors (local, cgroup) over
// schema/executor.capnp on a Unix socket that only runnerd's user may use, and holds the jobs it
// starts, so that they belong to it rather than to the network-facing runnerd. It keeps a record
// of each on disk, re-execs itself on SIGHUP keeping them (an upgrade), and after a crash of its
// predecessor kills what was left of its jobs and reports them lost.

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/main.h>
#include <kj/mutex.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executor-rpc/executor-service.h"
#include "executor-rpc/held-records.h"
#include "executor-rpc/unix-socket.h"
#include "executors/cgroup/cgroup-driver.h"
#include "executors/host-executors.h"
#include "runner/event-log.h"
#include "runner/homes.h"
#include "runner/supervisor-restart.h"

namespace runner {
namespace {

constexpr kj::StringPtr VERSION = "runner-supervisor 0.2"_kj;

// runnerd's defaults, so that a supervisor started with no flags serves a runnerd started with
// none.
constexpr kj::StringPtr DEFAULT_STATE_DIR = "/var/lib/runner"_kj;
constexpr kj::StringPtr DEFAULT_RUNNERD_USER = "runner"_kj;
constexpr uint32_t DEFAULT_FIRST_UID = 2000000000u;
constexpr uint32_t DEFAULT_LAST_UID = 2000999999u;

// How long a re-exec waits for the supervisor to have nothing in flight, and for the new binary
// to answer --version.
constexpr kj::Duration REEXEC_DEADLINE = 10 * kj::SECONDS;

// Creates `path` with `mode` when missing (its parents as `mkdir -p`, 0755).
void makeDirectories(kj::StringPtr path, mode_t mode) {
  KJ_REQUIRE(path.startsWith("/"), kj::str("not an absolute path: ", path));
  for (size_t i = 1; i <= path.size(); i++) {
    if (i == path.size() || path[i] == '/') {
      auto prefix = kj::str(path.slice(0, i));
      if (mkdir(prefix.cStr(), i == path.size() ? mode : 0755) < 0 && errno != EEXIST) {
        KJ_FAIL_REQUIRE(kj::str("cannot create ", prefix, ": ", strerror(errno)));
      }
    }
  }
}

// `path` without trailing slashes, so that it compares equal however it was written.
kj::String withoutTrailingSlash(kj::StringPtr path) {
  size_t n = path.size();
  while (n > 1 && path[n - 1] == '/') --n;
  return kj::heapString(path.begin(), n);
}

kj::Maybe<uint32_t> parseId(kj::ArrayPtr<const char> text) {
  if (text.size() == 0 || text.size() > 10) return nullptr;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return nullptr;
    value = value * 10 + (c - '0');
  }
  if (value > 0xfffffffeu) return nullptr;
  return uint32_t(value);
}

// The homes a launch may ask the supervisor to make: <homes>/<uid>, exactly.
class HomesPreparation final : public executor_rpc::UserPreparation {
 public:
  explicit HomesPreparation(kj::String dir)
      : dir(kj::mv(dir)), fd(openHomesDirectory(this->dir, "--homes")) {}

  void prepare(const executors::Credentials& credentials) const override {
    if (credentials.homeDir != kj::str(dir, '/', credentials.uid)) return;
    // One at a time: two launches of a new user must not both make (and check) its home.
    auto lock = making.lockExclusive();
    makeHome(fd.get(), dir, credentials.uid, credentials.gid);
  }

 private:
  kj::String dir;
  kj::AutoCloseFd fd;
  kj::MutexGuarded<bool> making;
};

class Supervisor {
 public:
  Supervisor(kj::ProcessContext& context, kj::ArrayPtr<char*> argv)
      : context(context), argv(argv) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, VERSION,
                           "Runs runnerd's jobs: launches, watches, signals and reaps them as "
                           "their owners' uids, in cgroups and namespaces, and serves this "
                           "(schema/executor.capnp) to runnerd on a Unix socket. Only "
                           "--runnerd-user may connect; anyone else is refused and logged. "
                           "Each job held has a record in <state-dir>/supervisor/held/. SIGHUP "
                           "re-execs the supervisor's binary keeping its jobs; SIGTERM stops them "
                           "(SIGTERM, SIGKILL after --grace) and exits. A supervisor that finds "
                           "jobs of a predecessor that crashed kills what is left of them and "
                           "reports them lost.")
        .addOptionWithArg({"state-dir"}, KJ_BIND_METHOD(*this, setStateDir), "<dir>",
                          "runnerd's state directory (default /var/lib/runner): the pid file is "
                          "<dir>/supervisor.pid, the socket <dir>/supervisor/executor.sock, the "
                          "records of held jobs <dir>/supervisor/held/.")
        .addOptionWithArg({"socket"}, KJ_BIND_METHOD(*this, setSocket), "<path>",
                          "The socket, instead of the one under --state-dir. Its directory is "
                          "made (or kept) mode 0750, group --runnerd-user's, owned by this "
                          "process's user.")
        .addOptionWithArg({"runnerd-user"}, KJ_BIND_METHOD(*this, setRunnerdUser), "<user|uid>",
                          "The only user allowed to connect (checked with SO_PEERCRED; default "
                          "runner, the system user scripts/install-deps creates).")
        .addOptionWithArg({"cgroup-parent"}, KJ_BIND_METHOD(*this, setCgroupParent), "<path>",
                          "Parent cgroup of the jobs' cgroups (as runnerd's --cgroup-parent).")
        .addOptionWithArg({"uid-range"}, KJ_BIND_METHOD(*this, setUidRange), "<first-last>",
                          "The uids jobs may run as, both included (default "
                          "2000000000-2000999999, runnerd's dynamic uids); a launch as any other "
                          "is refused and logged, and so is one with gid 0 or group 0.")
        .addOptionWithArg({"homes"}, KJ_BIND_METHOD(*this, setHomes), "<dir>",
                          "Where dynamic uids' homes are (default <state-dir>/homes): a launch "
                          "whose home is <dir>/<uid> has it made (0700, uid:gid) or checked "
                          "first. Must be root's and writable by nobody else; made when missing.")
        .addOptionWithArg({"grace"}, KJ_BIND_METHOD(*this, setGrace), "<seconds>",
                          "On SIGTERM or SIGINT, how long running jobs have between SIGTERM and "
                          "SIGKILL (default 10); a second signal kills at once.")
        .addOptionWithArg({"max-held-jobs"}, KJ_BIND_METHOD(*this, setMaxHeldJobs), "<n>",
                          "Jobs held at most, running or ended and not yet acknowledged by "
                          "runnerd (default 65536, at most 1048576); past it, launches are "
                          "refused with one line until runnerd has taken ends.")
        .addOptionWithArg({"executor"}, KJ_BIND_METHOD(*this, addServed), "<name>=<kind>",
                          "Serve this host's executor <kind> (local or cgroup) under <name>, the "
                          "name a runnerd asks for with --executor-socket <name>=<socket> "
                          "(repeatable, one name per kind). Given once, only the executors "
                          "named so are served; by default both are, under their kinds' names.")
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::ProcessContext& context;
  kj::ArrayPtr<char*> argv;
  kj::String stateDir = kj::str(DEFAULT_STATE_DIR);
  kj::Maybe<kj::String> socketPath;
  kj::Maybe<kj::String> runnerdUserFlag;
  uid_t runnerdUid = 0;
  gid_t runnerdGid = 0;
  kj::Maybe<kj::String> cgroupParent;
  uint32_t firstUid = DEFAULT_FIRST_UID;
  uint32_t lastUid = DEFAULT_LAST_UID;
  kj::Maybe<kj::String> homesDir;
  uint32_t graceSeconds = 10;
  size_t maxHeldJobs = executor_rpc::ExecutorService::MAX_HELD_JOBS;
  // --executor: the name each kind is served under; empty serves every kind under its own.
  struct Served {
    kj::String name;
    kj::String kind;
  };
  kj::Vector<Served> served;

  kj::MainBuilder::Validity setStateDir(kj::StringPtr v) {
    if (!v.startsWith("/")) return "--state-dir must be an absolute path";
    stateDir = withoutTrailingSlash(v);
    return true;
  }
  kj::MainBuilder::Validity setSocket(kj::StringPtr v) {
    if (!v.startsWith("/")) return "--socket must be an absolute path";
    socketPath = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setRunnerdUser(kj::StringPtr v) {
    struct passwd* entry = getpwnam(v.cStr());
    if (entry == nullptr) {
      KJ_IF_MAYBE (uid, parseId(v)) {
        entry = getpwuid(*uid);
        runnerdUid = *uid;
        runnerdGid = entry != nullptr ? entry->pw_gid : *uid;
        runnerdUserFlag = kj::str(v);
        return true;
      }
      return "--runnerd-user: no such user";
    }
    runnerdUid = entry->pw_uid;
    runnerdGid = entry->pw_gid;
    runnerdUserFlag = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setCgroupParent(kj::StringPtr v) {
    cgroupParent = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setUidRange(kj::StringPtr v) {
    KJ_IF_MAYBE (dash, v.findFirst('-')) {
      auto first = parseId(v.slice(0, *dash));
      auto last = parseId(v.slice(*dash + 1));
      KJ_IF_MAYBE (f, first) {
        KJ_IF_MAYBE (l, last) {
          if (*f > 0 && *f <= *l) {
            firstUid = *f;
            lastUid = *l;
            return true;
          }
        }
      }
    }
    return "--uid-range takes FIRST-LAST, two uids with 0 < FIRST <= LAST <= 4294967294";
  }
  kj::MainBuilder::Validity setHomes(kj::StringPtr v) {
    if (!v.startsWith("/")) return "--homes must be an absolute path";
    homesDir = withoutTrailingSlash(v);
    return true;
  }
  kj::MainBuilder::Validity setGrace(kj::StringPtr v) {
    KJ_IF_MAYBE (seconds, parseId(v)) {
      if (*seconds <= 3600) {
        graceSeconds = *seconds;
        return true;
      }
    }
    return "--grace takes a whole number of seconds, at most 3600";
  }

  kj::MainBuilder::Validity setMaxHeldJobs(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseId(v)) {
      if (*n >= 1 && *n <= (1u << 20)) {
        maxHeldJobs = *n;
        return true;
      }
    }
    return "--max-held-jobs takes a whole number from 1 to 1048576";
  }

  kj::MainBuilder::Validity addServed(kj::StringPtr v) {
    KJ_IF_MAYBE (eq, v.findFirst('=')) {
      auto name = kj::str(v.slice(0, *eq));
      auto kind = kj::str(v.slice(*eq + 1));
      if (kind != "local" && kind != "cgroup") {
        return "--executor takes NAME=KIND, KIND local or cgroup";
      }
      if (name.size() == 0 || name.size() > 64) {
        return "--executor takes NAME=KIND, NAME 1 to 64 characters";
      }
      for (char c : name) {
        if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
          return "--executor takes NAME=KIND, NAME of letters, digits, '-', '_' and '.'";
        }
      }
      for (auto& s : served) {
        if (s.name == name) return "--executor names an executor twice";
        if (s.kind == kind) return "--executor serves one kind under one name";
      }
      served.add(Served{kj::mv(name), kj::mv(kind)});
      return true;
    }
    return "--executor takes NAME=KIND, KIND local or cgroup";
  }

  kj::MainBuilder::Validity run() {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { serve(); })) {
      context.exitError(kj::str("runner-supervisor: ", e->getDescription()));
    }
    return true;
  }

  void resolveRunnerdUser() {
    if (runnerdUserFlag != nullptr) return;
    struct passwd* entry = getpwnam(DEFAULT_RUNNERD_USER.cStr());
    if (entry == nullptr) {
      KJ_FAIL_REQUIRE(kj::str("runnerd's user '", DEFAULT_RUNNERD_USER,
                              "' does not exist: create it with scripts/install-deps, or name "
                              "runnerd's user with --runnerd-user"));
    }
    runnerdUid = entry->pw_uid;
    runnerdGid = entry->pw_gid;
  }

  // The socket's directory: only this process's user and runnerd's group may enter it, and
  // nobody else may change it.
  void prepareSocketDirectory(kj::StringPtr dir) {
    makeDirectories(dir, 0750);
    int fd;
    KJ_SYSCALL(fd = open(dir.cStr(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), dir);
    kj::AutoCloseFd owned(fd);
    struct stat st;
    KJ_SYSCALL(fstat(fd, &st), dir);
    if (st.st_uid != geteuid()) {
      KJ_FAIL_REQUIRE(kj::str("the socket directory ", dir, " is owned by uid ", st.st_uid,
                              ", not by this process's user"));
    }
    KJ_SYSCALL(fchown(fd, geteuid(), runnerdGid), dir);
    KJ_SYSCALL(fchmod(fd, 0750), dir);
  }

  // <state-dir>/supervisor.pid, locked for the supervisor's life (and across its re-execs): a
  // second supervisor on the same state directory is refused.
  static kj::String octal(mode_t mode) {
    char text[8];
    snprintf(text, sizeof(text), "%04o", unsigned(mode));
    return kj::str(text);
  }

  // The state directory holds what root trusts (the pid file, the socket's directory, the
  // records, the homes): nobody but root may rename or replace anything in it, or above it.
  void requireRootsAlone(kj::StringPtr dir) {
    for (size_t i = dir.size(); i > 0; i--) {
      if (i != dir.size() && dir[i] != '/') continue;
      auto path = kj::str(dir.slice(0, i));
      struct stat st;
      KJ_SYSCALL(lstat(path.cStr(), &st), path);
      bool othersWrite = (st.st_mode & 002) || ((st.st_mode & 020) && st.st_gid != 0);
      bool ours = S_ISDIR(st.st_mode) && st.st_uid == geteuid();
      if (i == dir.size() ? (!ours || othersWrite)
                          : (st.st_uid != geteuid() || (othersWrite && !(st.st_mode & S_ISVTX)))) {
        KJ_FAIL_REQUIRE(
            kj::str("--state-dir ", dir,
                    i == dir.size() ? kj::str() : kj::str(" is below ", path, ", which"),
                    " must be root's and writable by root alone (it is owned by uid ", st.st_uid,
                    ", group ", st.st_gid, ", mode ", octal(st.st_mode & 07777),
                    "): the supervisor keeps its pid file, socket and job records there. A runnerd "
                    "started as root makes its state directory so"));
      }
    }
  }

  kj::AutoCloseFd writePidFile(kj::StringPtr path) {
    int fd;
    KJ_SYSCALL(fd = open(path.cStr(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644), path);
    kj::AutoCloseFd owned(fd);
    struct stat st;
    KJ_SYSCALL(fstat(fd, &st), path);
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
      KJ_FAIL_REQUIRE(kj::str(path, " is not a file of root's; remove it"));
    }
    // A supervisor holds its lock for as long as it runs; a probe (the unit's ExecStartPost, a
    // runnerd looking for a supervisor) takes a shared one for a moment. That moment is waited
    // out, for up to a second, rather than taken for a running supervisor.
    for (int attempt = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; attempt++) {
      if (errno != EWOULDBLOCK || attempt == 100) {
        KJ_FAIL_REQUIRE(kj::str("another supervisor holds ", path, " (", strerror(errno), ")"));
      }
      usleep(10000);
    }
    auto text = kj::str(getpid(), "\n");
    KJ_SYSCALL(ftruncate(fd, 0), path);
    KJ_SYSCALL(pwrite(fd, text.begin(), text.size(), 0), path);
    return owned;
  }

  // The next SIGTERM, SIGINT or SIGHUP.
  static kj::Promise<siginfo_t> nextSignal(kj::UnixEventPort& port) {
    return port.onSignal(SIGTERM)
        .exclusiveJoin(port.onSignal(SIGINT))
        .exclusiveJoin(port.onSignal(SIGHUP));
  }

  // While the jobs are being stopped: a second SIGTERM or SIGINT kills them at once.
  static kj::Promise<void> hurryOnSignal(kj::UnixEventPort& port, kj::Promise<siginfo_t> signal,
                                         executor_rpc::ExecutorService& service, EventLog& log) {
    return signal.then([&port, &service, &log](siginfo_t info) -> kj::Promise<void> {
      if (info.si_signo == SIGHUP) {
        log("SIGHUP while shutting down: no re-exec");
        return hurryOnSignal(port, nextSignal(port), service, log);
      }
      log("signal ", info.si_signo, " again: killing the jobs now");
      service.hurry();
      return kj::READY_NOW;
    });
  }

  void serve() {
    auto io = kj::setupAsyncIo();
    EventLog log(STDERR_FILENO);
    auto logLine = [&log](kj::StringPtr line) { log.write(line); };
    auto& port = io.unixEventPort;
    auto& timer = io.provider->getTimer();
    // Taken from the start (a re-exec'd image finds them still blocked, and pending): a signal
    // that arrives during start-up waits for the supervisor to serve, rather than killing it or
    // going unheard.
    kj::UnixEventPort::captureSignal(SIGTERM);
    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGHUP);
    auto signal = nextSignal(port);

    auto inherited = takeInheritedFds();
    resolveRunnerdUser();
    auto exe = ownBinaryPath();

    makeDirectories(stateDir, 0711);
    requireRootsAlone(stateDir);
    auto pidPath = kj::str(stateDir, "/supervisor.pid");
    auto socket = socketPath.map([](kj::String& p) { return kj::str(p); }).orDefault([&]() {
      return kj::str(stateDir, "/supervisor/executor.sock");
    });
    auto supervisorDir = kj::str(stateDir, "/supervisor");
    makeDirectories(supervisorDir, 0700);
    auto slash = KJ_ASSERT_NONNULL(socket.findLast('/'));
    prepareSocketDirectory(slash == 0 ? kj::str("/") : kj::str(socket.slice(0, slash)));

    kj::AutoCloseFd pidFile;
    kj::AutoCloseFd listenFd;
    KJ_IF_MAYBE (handed, inherited) {
      pidFile = kj::mv(handed->pidFile);
      listenFd = kj::mv(handed->listenFd);
    } else {
      pidFile = writePidFile(pidPath);
      listenFd = executor_rpc::listenUnixSocket(socket, 0660);
      KJ_SYSCALL(chown(socket.cStr(), geteuid(), runnerdGid), socket);
    }

    auto homes = homesDir.map([](kj::String& p) { return kj::str(p); }).orDefault([&]() {
      return kj::str(stateDir, "/homes");
    });
    if (mkdir(homes.cStr(), 0711) < 0 && errno != EEXIST) {
      KJ_FAIL_REQUIRE(kj::str("cannot create --homes ", homes, ": ", strerror(errno)));
    }
    HomesPreparation preparation(kj::str(homes));

    // Declared before the service: its thread runs until every record asked for is written.
    executor_rpc::HeldRecords records(kj::str(supervisorDir, "/held"));
    auto found = records.load(logLine);

    executors::ExecutorSet executorSet;
    executors::HostExecutorOptions options;
    options.cgroupParent = cgroupParent.map([](kj::String& p) -> kj::StringPtr { return p; })
                               .orDefault(executors::cgroup::DEFAULT_CGROUP_PARENT);
    options.log = logLine;
    if (served.size() > 0) {
      options.wanted = [this](kj::StringPtr kind) {
        for (auto& s : served) {
          if (s.kind == kind) return true;
        }
        return false;
      };
      options.nameOf = [this](kj::StringPtr kind) -> kj::StringPtr {
        for (auto& s : served) {
          if (s.kind == kind) return s.name;
        }
        return kind;
      };
      options.requireCgroup = options.wanted("cgroup");
    }
    executors::addHostExecutors(executorSet, port, timer, kj::mv(options));

    executor_rpc::LaunchPolicy policy;
    policy.firstUid = firstUid;
    policy.lastUid = lastUid;
    policy.maxHeldJobs = maxHeldJobs;
    policy.preparation = preparation;
    {
      executor_rpc::ExecutorService service(executorSet, records, timer, kj::mv(policy), logLine);
      service.recover(kj::mv(found)).wait(io.waitScope);
      executor_rpc::ExecutorListener listener(*io.lowLevelProvider, port, kj::mv(listenFd),
                                              runnerdUid, service, logLine);
      int listening = listener.fd();
      log("runner-supervisor ", inherited != nullptr ? "re-exec'd, " : "", "serving ",
          kj::strArray(executorSet.names(), ", "), " on ", socket, " for uid ", runnerdUid,
          "; pid ", getpid(), " in ", pidPath, "; uids ", firstUid, "-", lastUid, ", homes in ",
          homes, "; ", service.heldCount(), " jobs held");

      auto accepting = listener.run().eagerlyEvaluate(
          [&](kj::Exception&& e) { log("accepting connections failed: ", e.getDescription()); });

      kj::Maybe<kj::Promise<void>> restarting;
      bool restartDone = true;
      siginfo_t stop;
      for (;;) {
        auto got = signal.wait(io.waitScope);
        signal = nextSignal(port);
        if (got.si_signo != SIGHUP) {
          stop = got;
          break;
        }
        if (!restartDone) {
          log("SIGHUP: a re-exec is already under way");
          continue;
        }
        log("SIGHUP: re-exec of ", exe, " requested; ", service.heldCount(), " jobs held");
        restartDone = false;
        restarting = checkBinaryStarts(port, timer, exe, REEXEC_DEADLINE)
                         .then([&]() { return service.quiesce(REEXEC_DEADLINE); })
                         .then([&]() {
                           KJ_IF_MAYBE (busy, service.busyWith()) {
                             KJ_FAIL_REQUIRE(kj::str(*busy));
                           }
                           log("re-executing ", exe, " (pid ", getpid(), ") with ",
                               service.heldCount(), " jobs held");
                           int error = execSelf(exe, argv, listening, pidFile.get());
                           KJ_FAIL_REQUIRE(kj::str("execve ", exe, ": ", strerror(error)));
                         })
                         .catch_([&](kj::Exception&& e) {
                           log("re-exec failed: ", e.getDescription(), "; still serving (pid ",
                               getpid(), ")");
                           service.resume();
                         })
                         .then([&]() { restartDone = true; })
                         .eagerlyEvaluate(nullptr);
      }
      restarting = nullptr;
      service.resume();

      log("runner-supervisor shutting down on signal ", stop.si_signo, "; ", service.heldCount(),
          " jobs held");
      auto hurry = hurryOnSignal(port, kj::mv(signal), service, log).eagerlyEvaluate(nullptr);
      service.stopAll(graceSeconds * kj::SECONDS).wait(io.waitScope);
      // The service goes first: a job still held (a launch that was under way) is killed.
    }
    unlink(socket.cStr());
    unlink(pidPath.cStr());
    log("runner-supervisor stopped");
  }
};

}  // namespace
}  // namespace runner

int main(int argc, char* argv[]) {
  kj::TopLevelProcessContext context(argv[0]);
  runner::Supervisor supervisor(context, kj::arrayPtr(argv, argc));
  return kj::runMainAndExit(context, supervisor.getMain(), argc, argv);
}

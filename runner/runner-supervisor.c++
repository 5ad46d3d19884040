// runner-supervisor: runs runnerd's jobs. It serves this host's executors (local, cgroup) over
// schema/executor.capnp on a Unix socket that only runnerd's user may use, and holds the jobs it
// starts, so that they belong to it rather than to the network-facing runnerd.

#include <errno.h>
#include <fcntl.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/main.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executor-rpc/executor-service.h"
#include "executor-rpc/unix-socket.h"
#include "executors/cgroup/cgroup-driver.h"
#include "executors/host-executors.h"
#include "runner/event-log.h"

namespace runner {
namespace {

constexpr kj::StringPtr VERSION = "runner-supervisor 0.1"_kj;

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

class Supervisor {
 public:
  explicit Supervisor(kj::ProcessContext& context) : context(context) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, VERSION,
                           "Runs runnerd's jobs: launches, watches, signals and reaps them as "
                           "their owners' uids, in cgroups and namespaces, and serves this "
                           "(schema/executor.capnp) to runnerd on a Unix socket. Only "
                           "--runnerd-user may connect; anyone else is refused and logged.")
        .addOptionWithArg({"state-dir"}, KJ_BIND_METHOD(*this, setStateDir), "<dir>",
                          "runnerd's state directory (default /var/lib/runner): the pid file is "
                          "<dir>/supervisor.pid, the socket <dir>/supervisor/executor.sock.")
        .addOptionWithArg({"socket"}, KJ_BIND_METHOD(*this, setSocket), "<path>",
                          "The socket, instead of the one under --state-dir. Its directory is "
                          "made (or kept) mode 0750, group --runnerd-user's, owned by this "
                          "process's user.")
        .addOptionWithArg({"runnerd-user"}, KJ_BIND_METHOD(*this, setRunnerdUser), "<user|uid>",
                          "The only user allowed to connect (checked with SO_PEERCRED; default "
                          "root).")
        .addOptionWithArg({"cgroup-parent"}, KJ_BIND_METHOD(*this, setCgroupParent), "<path>",
                          "Parent cgroup of the jobs' cgroups (as runnerd's --cgroup-parent).")
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::ProcessContext& context;
  kj::String stateDir = kj::str("/var/lib/runner");
  kj::Maybe<kj::String> socketPath;
  uid_t runnerdUid = 0;
  gid_t runnerdGid = 0;
  kj::Maybe<kj::String> cgroupParent;

  kj::MainBuilder::Validity setStateDir(kj::StringPtr v) {
    if (!v.startsWith("/")) return "--state-dir must be an absolute path";
    stateDir = kj::str(v);
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
      char* end;
      errno = 0;
      unsigned long uid = strtoul(v.cStr(), &end, 10);
      if (v.size() == 0 || *end != '\0' || errno != 0 || uid > 0xfffffffeul) {
        return "--runnerd-user: no such user";
      }
      entry = getpwuid(uid);
      runnerdUid = uid;
      runnerdGid = entry != nullptr ? entry->pw_gid : uid;
      return true;
    }
    runnerdUid = entry->pw_uid;
    runnerdGid = entry->pw_gid;
    return true;
  }
  kj::MainBuilder::Validity setCgroupParent(kj::StringPtr v) {
    cgroupParent = kj::str(v);
    return true;
  }

  kj::MainBuilder::Validity run() {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { serve(); })) {
      context.exitError(kj::str("runner-supervisor: ", e->getDescription()));
    }
    return true;
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

  // <state-dir>/supervisor.pid, locked for the supervisor's life: a second supervisor on the
  // same state directory is refused.
  kj::AutoCloseFd writePidFile(kj::StringPtr path) {
    int fd;
    KJ_SYSCALL(fd = open(path.cStr(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644), path);
    kj::AutoCloseFd owned(fd);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
      KJ_FAIL_REQUIRE(kj::str("another supervisor holds ", path, " (", strerror(errno), ")"));
    }
    auto text = kj::str(getpid(), "\n");
    KJ_SYSCALL(ftruncate(fd, 0), path);
    KJ_SYSCALL(pwrite(fd, text.begin(), text.size(), 0), path);
    return owned;
  }

  void serve() {
    auto io = kj::setupAsyncIo();
    EventLog log(STDERR_FILENO);
    auto logLine = [&log](kj::StringPtr line) { log.write(line); };

    makeDirectories(stateDir, 0711);
    auto pidPath = kj::str(stateDir, "/supervisor.pid");
    auto pidFile = writePidFile(pidPath);
    auto socket = socketPath.map([](kj::String& p) { return kj::str(p); }).orDefault([&]() {
      return kj::str(stateDir, "/supervisor/executor.sock");
    });
    auto slash = KJ_ASSERT_NONNULL(socket.findLast('/'));
    prepareSocketDirectory(slash == 0 ? kj::str("/") : kj::str(socket.slice(0, slash)));
    auto listenFd = executor_rpc::listenUnixSocket(socket, 0660);
    KJ_SYSCALL(chown(socket.cStr(), geteuid(), runnerdGid), socket);

    executors::ExecutorSet executorSet;
    executors::HostExecutorOptions options;
    options.cgroupParent = cgroupParent.map([](kj::String& p) -> kj::StringPtr { return p; })
                               .orDefault(executors::cgroup::DEFAULT_CGROUP_PARENT);
    options.log = logLine;
    executors::addHostExecutors(executorSet, io.unixEventPort, io.provider->getTimer(),
                                kj::mv(options));

    {
      executor_rpc::ExecutorService service(executorSet, logLine);
      executor_rpc::ExecutorListener listener(*io.lowLevelProvider, io.unixEventPort,
                                              kj::mv(listenFd), runnerdUid, service, logLine);
      log("runner-supervisor serving ", kj::strArray(executorSet.names(), ", "), " on ", socket,
          " for uid ", runnerdUid, "; pid ", getpid(), " in ", pidPath);

      kj::UnixEventPort::captureSignal(SIGTERM);
      kj::UnixEventPort::captureSignal(SIGINT);
      auto stopSignal =
          io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
      auto signal = listener.run()
                        .then([]() -> siginfo_t { KJ_UNREACHABLE; })
                        .exclusiveJoin(kj::mv(stopSignal))
                        .wait(io.waitScope);
      log("runner-supervisor shutting down on signal ", signal.si_signo);
      // The service goes first: destroying it kills and reaps every job it still holds.
    }
    unlink(socket.cStr());
    unlink(pidPath.cStr());
    log("runner-supervisor stopped");
  }
};

}  // namespace
}  // namespace runner

KJ_MAIN(runner::Supervisor)

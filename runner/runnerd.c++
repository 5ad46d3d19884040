// runnerd: serves runner's API over mutual TLS and runs the jobs it is asked to run.

#include <errno.h>
#include <fcntl.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <kj/main.h>
#include <kj/vector.h>
#include <signal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>

#include "client/quantities.h"
#include "executor-rpc/remote-executor.h"
#include "executors/cgroup/cgroup-driver.h"
#include "executors/host-executors.h"
#include "executors/mount-namespaces.h"
#include "executors/threads.h"
#include "runner/config-file.h"
#include "runner/credentials.h"
#include "runner/event-log.h"
#include "runner/identities.h"
#include "runner/job-table.h"
#include "runner/metrics-http.h"
#include "runner/output-watcher.h"
#include "runner/privileges.h"
#include "runner/server.h"
#include "runner/service-metrics.h"
#include "runner/store.h"
#include "tls/tls-config.h"

namespace runner {
namespace {

constexpr kj::StringPtr VERSION = "runnerd 0.1"_kj;

// Creates `path` (and its parents, with `mode`) when missing and checks that this process can
// write there.
void prepareDirectory(kj::StringPtr flag, kj::StringPtr path, mode_t mode) {
  if (!path.startsWith("/")) {
    KJ_FAIL_REQUIRE(kj::str(flag, " must be an absolute path: ", path));
  }
  for (size_t i = 1; i <= path.size(); i++) {
    if (i == path.size() || path[i] == '/') {
      auto prefix = kj::str(path.slice(0, i));
      // Directories above it as `mkdir -p` makes them: the state directory's must be searchable
      // by the jobs, whichever of the two directories is made first.
      if (mkdir(prefix.cStr(), i == path.size() ? mode : 0755) < 0 && errno != EEXIST) {
        KJ_FAIL_REQUIRE(kj::str("cannot create ", flag, " ", prefix, ": ", strerror(errno)));
      }
    }
  }
  struct stat st;
  if (stat(path.cStr(), &st) < 0 || !S_ISDIR(st.st_mode)) {
    KJ_FAIL_REQUIRE(kj::str(flag, " is not a directory: ", path));
  }
  if (access(path.cStr(), W_OK | X_OK) < 0) {
    KJ_FAIL_REQUIRE(kj::str(flag, " is not writable: ", path, ": ", strerror(errno)));
  }
}

kj::String octalMode(mode_t mode) {
  char text[8];
  snprintf(text, sizeof(text), "%04o", mode & 07777);
  return kj::str(text);
}

// A directory whose entries decide what jobs get (their homes, their output files) must be
// runnerd's alone: another user who could write there, or in a directory above it, could swap
// them for their own. Above it, a directory may be root's and world-writable if it is sticky
// (like /tmp: nobody else can rename what root put there).
void requireOwnDirectory(kj::StringPtr flag, kj::StringPtr path, uid_t owner) {
  struct stat st;
  KJ_SYSCALL(stat(path.cStr(), &st), path);
  // Root's is fine too: a root runnerd gives it to its daemon user once the checks pass.
  if ((st.st_uid != owner && st.st_uid != 0) || (st.st_mode & 022) != 0) {
    KJ_FAIL_REQUIRE(kj::str(flag, " ", path,
                            " must be owned by runnerd's user and writable by it "
                            "alone (it is owned by uid ",
                            st.st_uid, ", mode ", octalMode(st.st_mode), ")"));
  }
  for (size_t i = path.size(); i-- > 1;) {
    if (path[i] != '/') continue;
    auto ancestor = kj::str(path.slice(0, i));
    KJ_SYSCALL(stat(ancestor.cStr(), &st), ancestor);
    bool othersWrite = (st.st_mode & 002) || ((st.st_mode & 020) && st.st_gid != 0);
    if ((st.st_uid != 0 && st.st_uid != owner) || (othersWrite && !(st.st_mode & S_ISVTX))) {
      KJ_FAIL_REQUIRE(kj::str(flag, " ", path, " is below ", ancestor,
                              ", which another user can change (owned by uid ", st.st_uid,
                              ", group ", st.st_gid, ", mode ", octalMode(st.st_mode), ")"));
    }
  }
}

// Each follower and each running job holds descriptors; the soft limit of 1024 is far too low.
// Returns the limit now in force.
uint64_t raiseDescriptorLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

// Descriptors a running job holds at most: its pidfd, its output file, and its cgroup's directory
// and cgroup.procs in each v1 hierarchy the cgroup executor uses (five).
constexpr uint64_t DESCRIPTORS_PER_RUNNING_JOB = 12;
// Descriptors runnerd keeps for itself and the users other than the one that holds the most:
// listening, logs, the store, inotify, pending handshakes.
constexpr uint64_t DESCRIPTOR_RESERVE = 2048;
// Within this many of the limit, new connections, watches and starts are refused (what is under
// way may still take a few: a pending handshake, a launch).
constexpr uint64_t DESCRIPTORS_REFUSED_AT = 1024;

// Parses runnerd's arguments again on a reload: what MainBuilder would print and exit with
// becomes an exception, so that a bad configuration is refused rather than fatal.
class ReloadContext final : public kj::ProcessContext {
 public:
  explicit ReloadContext(kj::StringPtr programName) : programName(programName) {}
  kj::StringPtr getProgramName() override { return programName; }
  void exit() override { KJ_FAIL_REQUIRE("the arguments did not parse"); }
  void warning(kj::StringPtr message) override {}
  void error(kj::StringPtr message) override { exitError(message); }
  void exitError(kj::StringPtr message) override {
    // MainBuilder's text is "runnerd: REASON\nTry 'runnerd --help' ...": the reason is the line.
    auto line = kj::str(message.slice(0, message.findFirst('\n').orDefault(message.size())));
    auto prefix = kj::str(programName, ": ");
    if (line.startsWith(prefix)) line = kj::str(line.slice(prefix.size()));
    kj::throwFatalException(
        kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(line)));
  }
  void exitInfo(kj::StringPtr message) override { exitError(message); }
  void increaseLoggingVerbosity() override {}

 private:
  kj::StringPtr programName;
};

class Runnerd {
 public:
  // `argv` is main()'s: a reload parses it again.
  Runnerd(kj::ProcessContext& context, kj::ArrayPtr<char* const> argv)
      : context(context), argv(argv) {}

  kj::MainFunc getMain() {
    flags.clear();
    kj::MainBuilder builder(context, VERSION,
                            "Serves runner's job API over mutual TLS 1.3. Clients authenticate "
                            "with certificates issued by the --tls-ca authority; the common name "
                            "of a client certificate is its user name. Jobs never run as root: "
                            "each owner's jobs run as a uid of its own (--users), or all as one "
                            "--run-as user.");
    // Every flag that takes a value is also a key of the --config file: one table, one parser
    // per setting. A flag given on the command line is remembered so that the file's values for
    // it are left out (for a repeatable flag, all of them).
    auto flag = [this, &builder](const char* name,
                                 kj::Function<kj::MainBuilder::Validity(kj::StringPtr)> set,
                                 kj::StringPtr argumentTitle, kj::StringPtr helpText) {
      size_t index = flags.size();
      flags.add(Flag{name, kj::mv(set)});
      builder.addOptionWithArg(
          {name},
          [this, index](kj::StringPtr value) {
            givenOnCommandLine.add(flags[index].name);
            return flags[index].set(value);
          },
          argumentTitle, helpText);
    };
    builder.addOptionWithArg({"config"}, KJ_BIND_METHOD(*this, setConfig), "<file>",
                             "Read settings from <file> first: one a line, KEY = VALUE (or KEY "
                             "VALUE), each key a flag below without its --; a repeatable flag "
                             "repeats; # starts a comment. A flag on the command line overrides "
                             "the file's values for it. Re-read on SIGHUP.");
    flag("listen", KJ_BIND_METHOD(*this, setListen), "<host:port>",
         "Address to listen on (default 127.0.0.1:7443; port 0 picks a free "
         "port, which is logged).");
    flag("metrics-listen", KJ_BIND_METHOD(*this, setMetricsListen), "<host:port>",
         "Also serve plain HTTP here, for monitoring: GET /metrics (Prometheus "
         "text format) and GET /healthz (200 ok, or 503 and why). No "
         "authentication: use an address only the monitoring reaches. Off by "
         "default; port 0 picks a free port, which is logged.");
    flag("tls-cert", KJ_BIND_METHOD(*this, setCert), "<file>", "The server's certificate (PEM).");
    flag("tls-key", KJ_BIND_METHOD(*this, setKey), "<file>",
         "The server certificate's private key (PEM).");
    flag("tls-ca", KJ_BIND_METHOD(*this, setCa), "<file>",
         "The only CA trusted to issue client certificates (PEM).");
    flag("tls-crl", KJ_BIND_METHOD(*this, setCrl), "<file>",
         "The CA's certificate revocation list (PEM, as runner-certs revoke "
         "keeps it): every handshake checks the client's certificate against "
         "it. Re-read with the certificates on SIGHUP.");
    flag("log-dir", KJ_BIND_METHOD(*this, setLogDir), "<dir>",
         "Where job output files are kept (default /var/log/runner).");
    flag("state-dir", KJ_BIND_METHOD(*this, setStateDir), "<dir>",
         "Where the job database is kept (default /var/lib/runner).");
    flag("users", KJ_BIND_METHOD(*this, setUsers), "<mode>",
         "Who each owner's jobs run as (a root runnerd): dynamic (the default) "
         "gives every owner a uid and gid of its own from --uid-range, kept in "
         "the state database, and a private home <state-dir>/homes/<uid>; "
         "accounts runs an owner as the local account of the same name "
         "(uid >= --min-uid).");
    flag("uid-range", KJ_BIND_METHOD(*this, setUidRange), "<first-last>",
         "The uids (and gids) of --users dynamic (default "
         "2000000000-2000999999). runnerd refuses to start if the range "
         "overlaps an account in /etc/passwd, a group in /etc/group, a range in "
         "/etc/subuid or /etc/subgid, or systemd's dynamic users (61184-65519).");
    flag("min-uid", KJ_BIND_METHOD(*this, setMinUid), "<uid>",
         "The lowest uid --users accounts runs jobs as (default 1000).");
    flag("run-as", KJ_BIND_METHOD(*this, setRunAs), "<user>",
         "Run every owner's jobs as this one unprivileged user instead: no "
         "isolation between owners, for single-tenant use. Excludes --users. "
         "A runnerd that does not run as root runs jobs as its own user.");
    flag("executor", KJ_BIND_METHOD(*this, setExecutor), "<name>",
         "Default executor: local or cgroup (default local).");
    flag("executor-socket", KJ_BIND_METHOD(*this, addExecutorSocket), "<name>=<path>",
         "Run the jobs of executor <name> through the process serving "
         "schema/executor.capnp on the Unix socket <path> (runner-supervisor, "
         "or an executor extension) instead of the supervisor (repeatable). Its "
         "jobs outlive runnerd: the next runnerd takes them back.");
    flag("admin", KJ_BIND_METHOD(*this, addAdmin), "<user>",
         "A user who may stop and read every job (repeatable).");
    flag("cgroup-parent", KJ_BIND_METHOD(*this, setCgroupParent), "<path>",
         "Parent cgroup of the jobs' cgroups, in every cgroup hierarchy the "
         "cgroup executor uses. A path starting with / is taken from the "
         "hierarchy's root (e.g. /runner is /sys/fs/cgroup/memory/runner on "
         "v1, /sys/fs/cgroup/runner on v2); any other path is below runnerd's "
         "own cgroup there, as /proc/self/cgroup lists it. Created (mode 0755) "
         "when missing and left in place at exit. Default: runner, a child of "
         "runnerd's own cgroup.");
    flag("grace", KJ_BIND_METHOD(*this, setGrace), "<seconds>",
         "Default grace period of a stop before SIGKILL (default 10).");
    flag("max-connections", KJ_BIND_METHOD(*this, setMaxConnections), "<n>",
         "Authenticated connections open at once (default 1024).");
    flag("max-connections-per-user", KJ_BIND_METHOD(*this, setMaxConnectionsPerUser), "<n>",
         "Connections one user may hold open (default 32).");
    flag("max-watches-per-user", KJ_BIND_METHOD(*this, setMaxWatchesPerUser), "<n>",
         "Output watches (logs -f, run) one user may hold open over all its "
         "connections (default 1024; 256 per connection).");
    flag("idle-timeout", KJ_BIND_METHOD(*this, setIdleTimeout), "<seconds>",
         "Close a connection that has no call in progress and no output watch "
         "and made no call for this long (default 300).");
    flag("max-running-per-user", KJ_BIND_METHOD(*this, setMaxRunningPerUser), "<n>",
         "Jobs one owner may have running at once (default 256).");
    flag("max-stored-per-user", KJ_BIND_METHOD(*this, setMaxStoredPerUser), "<n>",
         "Ended jobs kept per owner (default 10000); past it, or past "
         "--max-stored-bytes-per-user, the oldest ended ones are forgotten: "
         "record and output.");
    flag("max-stored-bytes-per-user", KJ_BIND_METHOD(*this, setMaxStoredBytesPerUser), "<bytes>",
         "The size of the records (command, arguments, error) of the ended jobs "
         "kept per owner (default 256M).");
    flag("max-stored-bytes", KJ_BIND_METHOD(*this, setMaxStoredBytes), "<bytes>",
         "The size of the records of the ended jobs kept over all owners "
         "(default 1G); past it, the owner who keeps the most gives way first.");
    flag("retain-for", KJ_BIND_METHOD(*this, setRetainFor), "<duration>",
         "Remove each ended job (record and output) once it ended this long "
         "ago: 90s, 12h, 7d, ..., from 1s to 3650d. Looked for every quarter "
         "of it, at least every second and at most every minute. Jobs a client "
         "holds wait. Default: kept (within --max-stored-per-user).");
    flag("retain-jobs", KJ_BIND_METHOD(*this, setRetainJobs), "<n>",
         "Keep at most this many ended jobs over all owners; past it, the oldest "
         "(by creation) are removed first, record and output. Jobs a client "
         "holds wait (looked for again every 5 s). Default: no such limit.");
    flag("max-output", KJ_BIND_METHOD(*this, setMaxOutput), "<bytes>",
         "Output one job may write (default 64G; K, M, G and T are powers of "
         "1024). A job that reaches it is stopped; a spec may ask for less.");
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, run)).build();
  }

 private:
  kj::ProcessContext& context;
  kj::ArrayPtr<char* const> argv;
  // The flags that take a value, by name: the keys of the --config file.
  struct Flag {
    kj::StringPtr name;
    kj::Function<kj::MainBuilder::Validity(kj::StringPtr)> set;
  };
  kj::Vector<Flag> flags;
  kj::Vector<kj::StringPtr> givenOnCommandLine;
  kj::Maybe<kj::String> configPath;
  // Set on a reload's parse: the arguments are checked, nothing is started.
  bool parseOnly = false;
  kj::String listen = kj::str("127.0.0.1:7443");
  kj::Maybe<kj::String> metricsListen;
  kj::String certPath, keyPath, caPath, crlPath;
  kj::String logDir = kj::str("/var/log/runner");
  kj::String stateDir = kj::str("/var/lib/runner");
  kj::Maybe<kj::String> runAs;
  kj::Maybe<kj::String> users;
  UidRange uidRange = DEFAULT_UID_RANGE;
  uint32_t minUid = 1000;
  // Held for runnerd's life: no other runnerd of this host uses an overlapping uid range.
  kj::AutoCloseFd uidRangeClaim;
  kj::String executor = kj::str("local");
  struct ExecutorSocket {
    kj::String name;
    kj::String path;
  };
  kj::Vector<ExecutorSocket> executorSockets;
  kj::Vector<kj::String> admins;
  kj::Maybe<kj::String> cgroupParent;
  uint graceSeconds = 10;
  ServerLimits serverLimits;
  uint32_t maxRunningPerUser = 256;
  uint64_t maxOutputBytes = uint64_t(64) << 30;
  uint32_t maxStoredPerUser = 10000;
  uint64_t maxStoredBytesPerUser = uint64_t(256) << 20;
  uint64_t maxStoredBytes = uint64_t(1) << 30;
  kj::Maybe<kj::Duration> retainFor;
  uint32_t retainJobs = 0;

  // A whole number in [1, max], or nullptr.
  static kj::Maybe<uint64_t> parseCount(kj::StringPtr v, uint64_t max) {
    char* end;
    errno = 0;
    unsigned long long n = strtoull(v.cStr(), &end, 10);
    if (v.size() == 0 || v[0] == '-' || *end != '\0' || errno != 0 || n == 0 || n > max) {
      return nullptr;
    }
    return uint64_t(n);
  }
  kj::MainBuilder::Validity setMaxConnections(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 1000000)) {
      serverLimits.connections = *n;
      return true;
    }
    return "--max-connections takes a number from 1 to 1000000";
  }
  kj::MainBuilder::Validity setMaxConnectionsPerUser(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 1000000)) {
      serverLimits.connectionsPerUser = *n;
      return true;
    }
    return "--max-connections-per-user takes a number from 1 to 1000000";
  }
  kj::MainBuilder::Validity setMaxWatchesPerUser(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 1000000)) {
      serverLimits.perConnection.watchesPerUser = *n;
      return true;
    }
    return "--max-watches-per-user takes a number from 1 to 1000000";
  }
  kj::MainBuilder::Validity setIdleTimeout(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 7 * 86400)) {
      serverLimits.idleTimeout = *n * kj::SECONDS;
      return true;
    }
    return "--idle-timeout takes a whole number of seconds from 1 to 604800";
  }
  kj::MainBuilder::Validity setMaxRunningPerUser(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 1000000)) {
      maxRunningPerUser = *n;
      return true;
    }
    return "--max-running-per-user takes a number from 1 to 1000000";
  }
  kj::MainBuilder::Validity setMaxStoredPerUser(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 100000000)) {
      maxStoredPerUser = *n;
      return true;
    }
    return "--max-stored-per-user takes a number from 1 to 100000000";
  }
  kj::MainBuilder::Validity setMaxStoredBytesPerUser(kj::StringPtr v) {
    KJ_IF_MAYBE (n, client::parseSize(v)) {
      if (*n > 0) {
        maxStoredBytesPerUser = *n;
        return true;
      }
    }
    return "--max-stored-bytes-per-user takes a size in bytes above 0, with an optional K, M, G "
           "or T suffix";
  }
  kj::MainBuilder::Validity setMaxStoredBytes(kj::StringPtr v) {
    KJ_IF_MAYBE (n, client::parseSize(v)) {
      if (*n > 0) {
        maxStoredBytes = *n;
        return true;
      }
    }
    return "--max-stored-bytes takes a size in bytes above 0, with an optional K, M, G or T "
           "suffix";
  }
  kj::MainBuilder::Validity setRetainFor(kj::StringPtr v) {
    KJ_IF_MAYBE (millis, client::parseDuration(v)) {
      if (*millis >= 1000 && *millis <= uint64_t(3650) * 86400 * 1000) {
        retainFor = *millis * kj::MILLISECONDS;
        return true;
      }
    }
    return "--retain-for takes a duration from 1s to 3650d, e.g. 90s, 12h, 7d";
  }
  kj::MainBuilder::Validity setRetainJobs(kj::StringPtr v) {
    KJ_IF_MAYBE (n, parseCount(v, 100000000)) {
      retainJobs = *n;
      return true;
    }
    return "--retain-jobs takes a number from 1 to 100000000";
  }
  kj::MainBuilder::Validity setMaxOutput(kj::StringPtr v) {
    KJ_IF_MAYBE (n, client::parseSize(v)) {
      if (*n > 0) {
        maxOutputBytes = *n;
        return true;
      }
    }
    return "--max-output takes a size in bytes above 0, with an optional K, M, G or T suffix";
  }

  kj::MainBuilder::Validity setListen(kj::StringPtr v) {
    listen = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setMetricsListen(kj::StringPtr v) {
    if (v.size() == 0) return "--metrics-listen needs HOST:PORT";
    metricsListen = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setCert(kj::StringPtr v) {
    certPath = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setKey(kj::StringPtr v) {
    keyPath = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setCa(kj::StringPtr v) {
    caPath = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setCrl(kj::StringPtr v) {
    crlPath = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setLogDir(kj::StringPtr v) {
    logDir = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setStateDir(kj::StringPtr v) {
    stateDir = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setRunAs(kj::StringPtr v) {
    if (v.size() == 0) return "--run-as needs a user name";
    runAs = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setUsers(kj::StringPtr v) {
    if (v != "dynamic" && v != "accounts") return "--users takes dynamic or accounts";
    users = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setUidRange(kj::StringPtr v) {
    KJ_IF_MAYBE (range, parseUidRange(v)) {
      uidRange = *range;
      return true;
    }
    return "--uid-range takes FIRST-LAST, two uids with 0 < FIRST <= LAST, not including 65535 "
           "or 4294967295";
  }
  kj::MainBuilder::Validity setMinUid(kj::StringPtr v) {
    char* end;
    errno = 0;
    unsigned long n = strtoul(v.cStr(), &end, 10);
    if (v.size() == 0 || *end != '\0' || errno != 0 || n == 0 || n >= 0xffffffffu) {
      return "--min-uid takes a uid above 0";
    }
    minUid = n;
    return true;
  }
  kj::MainBuilder::Validity setExecutor(kj::StringPtr v) {
    executor = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity addExecutorSocket(kj::StringPtr v) {
    KJ_IF_MAYBE (eq, v.findFirst('=')) {
      auto name = kj::str(v.slice(0, *eq));
      auto path = kj::str(v.slice(*eq + 1));
      if (name.size() > 0 && path.startsWith("/")) {
        for (auto& socket : executorSockets) {
          if (socket.name == name) return "--executor-socket names an executor twice";
        }
        executorSockets.add(ExecutorSocket{kj::mv(name), kj::mv(path)});
        return true;
      }
    }
    return "--executor-socket takes NAME=PATH, PATH an absolute path";
  }
  kj::MainBuilder::Validity addAdmin(kj::StringPtr v) {
    if (v.size() == 0) return "an admin name cannot be empty";
    admins.add(kj::str(v));
    return true;
  }
  kj::MainBuilder::Validity setCgroupParent(kj::StringPtr v) {
    cgroupParent = kj::str(v);
    return true;
  }
  kj::MainBuilder::Validity setGrace(kj::StringPtr v) {
    char* end;
    errno = 0;
    unsigned long n = strtoul(v.cStr(), &end, 10);
    if (v.size() == 0 || *end != '\0' || errno != 0 || n > 86400) {
      return "--grace takes a whole number of seconds (at most 86400)";
    }
    graceSeconds = n;
    return true;
  }

  kj::MainBuilder::Validity setConfig(kj::StringPtr v) {
    if (v.size() == 0) return "--config needs a file";
    configPath = kj::str(v);
    return true;
  }

  // Sets what the --config file says, through the flags' own callbacks, except the flags the
  // command line gave. Throws one line, "FILE:LINE: why", for the first setting refused.
  void applyConfigFile(kj::StringPtr path) {
    for (auto& entry : readConfigFile(path)) {
      auto where = [&]() { return kj::str(path, ':', entry.line, ": "); };
      auto known = std::find_if(flags.begin(), flags.end(),
                                [&](const Flag& f) { return f.name == entry.key; });
      if (known == flags.end()) {
        kj::throwFatalException(
            kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                          kj::str(where(), "unknown key ", entry.key,
                                  " (the keys are runnerd's flags that "
                                  "take a value, without their --; see runnerd --help)")));
      }
      if (std::find(givenOnCommandLine.begin(), givenOnCommandLine.end(), known->name) !=
          givenOnCommandLine.end()) {
        continue;
      }
      KJ_IF_MAYBE (error, known->set(entry.value).releaseError()) {
        kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                              kj::str(where(), *error)));
      }
    }
  }

  kj::MainBuilder::Validity run() {
    // Read now, after the command line, so that its flags are known to override the file's; on a
    // reload, this runs off the event loop (readConfiguration()).
    KJ_IF_MAYBE (path, configPath) {
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { applyConfigFile(*path); })) {
        context.exitError(kj::str(context.getProgramName(), ": ", e->getDescription()));
      }
    }
    if (certPath.size() == 0 || keyPath.size() == 0 || caPath.size() == 0) {
      return "--tls-cert, --tls-key and --tls-ca are required";
    }
    if (runAs != nullptr && users != nullptr) {
      return "--run-as (every job as one user) and --users exclude each other";
    }
    if (parseOnly) return true;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { serve(); })) {
      context.exitError(kj::str("runnerd: ", e->getDescription()));
    }
    return true;
  }

  // runnerd's own part of the state directory: the job database. The state directory itself is
  // root's when runnerd starts as root: the supervisor keeps its pid file, socket and records
  // there, and nothing root trusts may sit in a directory the daemon user could write.
  kj::String databaseDir() const { return kj::str(stateDir, '/', DATABASE_DIR); }

  // The job database, readable by runnerd's user alone: the state directory may have to be
  // traversable by the jobs (their homes are below it).
  kj::Own<Store> openStore() {
    auto path = kj::str(databaseDir(), "/runner.db");
    int fd = open(path.cStr(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      fchmod(fd, 0600);
      close(fd);
    }
    return Store::open(path);
  }

  // Who the jobs run as, decided while runnerd is still root: what the supervisor is to grant
  // (--uid-range of runner-supervisor) follows from it.
  enum class IdentityMode { OWN_USER, RUN_AS, ACCOUNTS, DYNAMIC };
  IdentityMode identityMode = IdentityMode::DYNAMIC;
  kj::Maybe<executors::Credentials> runAsUser;

  // As root, before anything is served: checks and makes what the identities need.
  void prepareIdentities() {
    if (geteuid() != 0) {
      if (users != nullptr) {
        KJ_FAIL_REQUIRE(
            "--users needs a runnerd started as root (an unprivileged runnerd runs "
            "every job as its own user)");
      }
      identityMode = IdentityMode::OWN_USER;
      return;
    }
    KJ_IF_MAYBE (name, runAs) {
      identityMode = IdentityMode::RUN_AS;
      runAsUser = resolveRunAs(*name);
      return;
    }
    if (users.orDefault(kj::str("dynamic")) == "accounts") {
      identityMode = IdentityMode::ACCOUNTS;
      return;
    }
    identityMode = IdentityMode::DYNAMIC;
    KJ_IF_MAYBE (conflict, findUidRangeConflict(uidRange, readHostIdFiles())) {
      KJ_FAIL_REQUIRE(kj::str(*conflict, "; choose another with --uid-range"));
    }
    uidRangeClaim = claimUidRange(uidRange, stateDir);
    // The homes are below the state directory: jobs must see it (it cannot be in a directory of
    // which each job has a private one) and pass through every directory above it, through it
    // (not list it), and through homes/ to their own home alone.
    char* real = realpath(stateDir.cStr(), nullptr);
    KJ_ASSERT(real != nullptr, "realpath", stateDir, strerror(errno));
    KJ_DEFER(free(real));
    KJ_IF_MAYBE (hidden, executors::underPrivateTmpfs(real)) {
      KJ_FAIL_REQUIRE(kj::str("jobs could not reach their homes in ", stateDir,
                              "/homes: every job "
                              "has a private ",
                              *hidden, "; choose a --state-dir elsewhere"));
    }
    struct stat st;
    for (size_t i = 1; i < stateDir.size(); i++) {
      if (stateDir[i] != '/') continue;
      auto ancestor = kj::str(stateDir.slice(0, i));
      KJ_SYSCALL(stat(ancestor.cStr(), &st), ancestor);
      if ((st.st_mode & 0001) == 0) {
        KJ_FAIL_REQUIRE(kj::str("jobs could not reach their homes in ", stateDir,
                                "/homes: ", ancestor, " is not searchable by other users (mode ",
                                octalMode(st.st_mode),
                                "); make it so or choose another "
                                "--state-dir"));
      }
    }
    KJ_SYSCALL(stat(stateDir.cStr(), &st), stateDir);
    if ((st.st_mode & 0001) == 0) {
      KJ_SYSCALL(chmod(stateDir.cStr(), (st.st_mode & 07777) | 0001), stateDir);
    }
    auto homes = kj::str(stateDir, "/homes");
    if (mkdir(homes.cStr(), 0711) < 0 && errno != EEXIST) {
      KJ_FAIL_REQUIRE(kj::str("cannot create ", homes, ": ", strerror(errno)));
    }
    // Checked and changed through one descriptor: the state directory is the daemon user's, who
    // could swap the name for a symbolic link between a check by path and a chmod() by path.
    int homesFd = open(homes.cStr(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (homesFd < 0) {
      KJ_FAIL_REQUIRE(kj::str(homes, " must be a directory owned by root: ", strerror(errno)));
    }
    kj::AutoCloseFd homesDir(homesFd);
    KJ_SYSCALL(fstat(homesFd, &st), homes);
    if (!S_ISDIR(st.st_mode) || st.st_uid != 0) {
      KJ_FAIL_REQUIRE(kj::str(homes, " must be a directory owned by root"));
    }
    KJ_SYSCALL(fchmod(homesFd, 0711), homes);
  }

  kj::Own<OwnerIdentities> makeIdentities(Store& store, EventLog& log, bool supervised) {
    switch (identityMode) {
      case IdentityMode::OWN_USER:
        return newSharedIdentity(currentUser());
      case IdentityMode::RUN_AS:
        return newSharedIdentity(cloneCredentials(KJ_ASSERT_NONNULL(runAsUser)));
      case IdentityMode::ACCOUNTS:
        return newAccountIdentities(minUid);
      case IdentityMode::DYNAMIC:
        return newDynamicIdentities(store, uidRange, kj::str(stateDir, "/homes"), log, !supervised);
    }
    KJ_UNREACHABLE;
  }

  // The supervisor's command line: what it is to grant follows from how owners map to users.
  kj::Array<kj::String> supervisorArgs(const DaemonUser& daemon) {
    kj::Vector<kj::String> args;
    args.add(kj::str("--state-dir=", stateDir));
    args.add(kj::str("--runnerd-user=", daemon.name));
    switch (identityMode) {
      case IdentityMode::OWN_USER:
        break;
      case IdentityMode::RUN_AS: {
        auto& user = KJ_ASSERT_NONNULL(runAsUser);
        args.add(kj::str("--uid-range=", user.uid, "-", user.uid));
        break;
      }
      case IdentityMode::ACCOUNTS:
        args.add(kj::str("--uid-range=", minUid, "-", 4294967294u));
        break;
      case IdentityMode::DYNAMIC:
        args.add(kj::str("--uid-range=", uidRange.first, "-", uidRange.last));
        break;
    }
    KJ_IF_MAYBE (parent, cgroupParent) {
      args.add(kj::str("--cgroup-parent=", *parent));
    }
    args.add(kj::str("--grace=", graceSeconds));
    return args.releaseAsArray();
  }

  // A root runnerd's files, made or left by root (an older runnerd, or this one before it
  // dropped root), become the daemon user's: the log directory and its files, and the database
  // directory; the state directory becomes root's (see databaseDir()).
  void giveFilesTo(const DaemonUser& daemon) {
    giveTo(logDir, daemon);
    secureStateDirectory(stateDir, daemon);
    for (auto name : DATABASE_FILES) {
      auto path = kj::str(databaseDir(), '/', name);
      struct stat st;
      if (lstat(path.cStr(), &st) == 0) giveTo(path, daemon);
    }
    auto fs = kj::newDiskFilesystem();
    auto dir = fs->getRoot().openSubdir(kj::Path::parse(logDir.slice(1)));
    for (auto& entry : dir->listEntries()) {
      if (entry.type == kj::FsNode::Type::FILE) giveTo(kj::str(logDir, '/', entry.name), daemon);
    }
  }

  tls::TlsFiles tlsFiles() const { return {certPath, keyPath, caPath, crlPath}; }

  // One setting as the command line (or a configuration file) gave it, to tell what a reload
  // changed. Only the TLS files and the admins take effect on a reload.
  struct Setting {
    kj::StringPtr flag;
    kj::String value;
  };
  kj::Array<Setting> settings() const {
    auto orNone = [](const kj::Maybe<kj::String>& v) {
      return v.map([](const kj::String& s) { return kj::str(s); }).orDefault(kj::str("(none)"));
    };
    auto sockets = KJ_MAP(socket, executorSockets) {
      return kj::str(socket.name, '=', socket.path);
    };
    return kj::arr(
        Setting{"listen", kj::str(listen)}, Setting{"metrics-listen", orNone(metricsListen)},
        Setting{"log-dir", kj::str(logDir)}, Setting{"state-dir", kj::str(stateDir)},
        Setting{"run-as", orNone(runAs)}, Setting{"users", orNone(users)},
        Setting{"uid-range", kj::str(uidRange.first, '-', uidRange.last)},
        Setting{"min-uid", kj::str(minUid)}, Setting{"executor", kj::str(executor)},
        Setting{"executor-socket", kj::strArray(sockets, ",")},
        Setting{"cgroup-parent", orNone(cgroupParent)}, Setting{"grace", kj::str(graceSeconds)},
        Setting{"max-connections", kj::str(serverLimits.connections)},
        Setting{"max-connections-per-user", kj::str(serverLimits.connectionsPerUser)},
        Setting{"max-watches-per-user", kj::str(serverLimits.perConnection.watchesPerUser)},
        Setting{"idle-timeout", kj::str(serverLimits.idleTimeout)},
        Setting{"max-running-per-user", kj::str(maxRunningPerUser)},
        Setting{"max-stored-per-user", kj::str(maxStoredPerUser)},
        Setting{"max-stored-bytes-per-user", kj::str(maxStoredBytesPerUser)},
        Setting{"max-stored-bytes", kj::str(maxStoredBytes)},
        Setting{
            "retain-for",
            retainFor.map([](kj::Duration d) { return kj::str(d); }).orDefault(kj::str("(none)"))},
        Setting{"retain-jobs", retainJobs > 0 ? kj::str(retainJobs) : kj::str("(none)")},
        Setting{"max-output", kj::str(maxOutputBytes)});
  }

  // What a reload read: the arguments parsed again and the TLS files they name.
  struct Reloaded {
    ReloadContext context;
    kj::Own<Runnerd> settings;
    kj::Own<tls::ServerTls> tls;
    Reloaded(kj::StringPtr programName, kj::ArrayPtr<char* const> argv)
        : context(programName), settings(kj::heap<Runnerd>(context, argv)) {}
  };

  // Parses the arguments again and reads the TLS files they name, off the event loop (a disk
  // that does not answer holds up nothing but the reload). Rejects with one line.
  kj::Promise<kj::Own<Reloaded>> readConfiguration(kj::Timer& timer,
                                                   kj::Duration handshakeTimeout) {
    auto programName = kj::str(context.getProgramName());
    auto args = argv;
    return executors::runOffLoop<kj::Own<Reloaded>>(
        [programName = kj::mv(programName), args, &timer, handshakeTimeout]() {
          auto reloaded = kj::heap<Reloaded>(programName, args);
          reloaded->settings->parseOnly = true;
          auto params = KJ_MAP(arg, args.slice(1, args.size())) {
            return kj::StringPtr(arg);
          };
          reloaded->settings->getMain()(programName, params);
          reloaded->tls =
              kj::heap<tls::ServerTls>(reloaded->settings->tlsFiles(), timer, handshakeTimeout);
          return reloaded;
        });
  }

  // SIGHUP: the TLS files (certificate, key, CA, revocation list) and the admins are read again
  // and used for new connections, each change logged; other settings that changed are logged as
  // taking effect at the next start. A configuration that does not parse, or TLS files that do not
  // load, are refused with one line and everything stays as it was.
  kj::Promise<void> reloadOnSignal(kj::UnixEventPort& port, kj::Timer& timer, Server& server,
                                   kj::Own<tls::ServerTls>& current, EventLog& log) {
    return port.onSignal(SIGHUP).then([this, &port, &timer, &server, &current, &log](siginfo_t) {
      return readConfiguration(timer, current->getHandshakeTimeout())
          .then([this, &server, &current,
                 &log](kj::Own<Reloaded> reloaded) { apply(*reloaded, server, current, log); },
                [&log](kj::Exception&& e) {
                  log("reload on SIGHUP refused: ", e.getDescription(),
                      "; the configuration in force stays");
                })
          .then([this, &port, &timer, &server, &current, &log]() {
            return reloadOnSignal(port, timer, server, current, log);
          });
    });
  }

  void apply(Reloaded& reloaded, Server& server, kj::Own<tls::ServerTls>& current, EventLog& log) {
    auto& fresh = *reloaded.settings;
    auto before = settings();
    auto after = fresh.settings();
    for (auto i : kj::indices(before)) {
      if (before[i].value != after[i].value) {
        log("reload: --", before[i].flag, " changed (", before[i].value, " -> ", after[i].value,
            "); it takes effect at the next start");
      }
    }
    auto& was = current->summary();
    auto& now = reloaded.tls->summary();
    auto changed = [](kj::StringPtr a, kj::StringPtr b) {
      return a == b ? "unchanged" : "changed";
    };
    log("reload: certificate ", now.certificate, " (", changed(was.certificate, now.certificate),
        "); CA ", now.ca, " (", changed(was.ca, now.ca), ")");
    auto revoked = [](const kj::Maybe<size_t>& n) {
      return n.map([](size_t v) { return kj::str(v, " certificates revoked"); })
          .orDefault(kj::str("no revocation list"));
    };
    log("reload: ", revoked(now.revoked), " (before: ", revoked(was.revoked), ")");
    kj::Vector<kj::String> added, removed;
    for (auto& name : fresh.admins) {
      if (std::find(admins.begin(), admins.end(), name) == admins.end()) added.add(kj::str(name));
    }
    for (auto& name : admins) {
      if (std::find(fresh.admins.begin(), fresh.admins.end(), name) == fresh.admins.end()) {
        removed.add(kj::str(name));
      }
    }
    if (added.size() > 0 || removed.size() > 0) {
      log("reload: admins now ",
          fresh.admins.size() == 0 ? kj::str("(none)") : kj::strArray(fresh.admins, ", "),
          added.size() > 0 ? kj::str("; added ", kj::strArray(added, ", ")) : kj::str(),
          removed.size() > 0 ? kj::str("; removed ", kj::strArray(removed, ", ")) : kj::str());
    }
    certPath = kj::mv(fresh.certPath);
    keyPath = kj::mv(fresh.keyPath);
    caPath = kj::mv(fresh.caPath);
    crlPath = kj::mv(fresh.crlPath);
    admins = kj::mv(fresh.admins);
    auto serverAdmins = KJ_MAP(name, admins) {
      return kj::str(name);
    };
    server.reload(*reloaded.tls, kj::mv(serverAdmins));
    // Handshakes under way hold the TLS state they began with (OpenSSL counts its references),
    // not this object; the one before is kept a reload longer all the same.
    previousTls = kj::mv(current);
    current = kj::mv(reloaded.tls);
    log("reloaded on SIGHUP: new connections use the certificate, CA, revocation list and admins "
        "just read; open connections and running jobs are untouched");
  }
  kj::Own<tls::ServerTls> previousTls;

  // Listens on `address` (HOST:PORT, or HOST with `defaultPort`); throws one line saying why not.
  static kj::Own<kj::ConnectionReceiver> listenOn(kj::AsyncIoContext& io, kj::StringPtr flag,
                                                  kj::StringPtr address, uint defaultPort) {
    kj::Own<kj::ConnectionReceiver> listener;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   auto parsed = io.provider->getNetwork()
                                     .parseAddress(address, defaultPort)
                                     .wait(io.waitScope);
                   listener = parsed->listen();
                 })) {
      // KJ's text is "...syscall(...): reason; address"; the reason is what a user needs.
      auto description = e->getDescription();
      auto text =
          kj::str(description.slice(0, description.findFirst(';').orDefault(description.size())));
      kj::StringPtr reason = text;
      for (size_t i = 0; i + 1 < text.size(); i++) {
        if (text[i] == ':' && text[i + 1] == ' ') reason = text.slice(i + 2);
      }
      if (reason == "Address already in use") {
        auto port = address.findLast(':')
                        .map([&](size_t colon) { return kj::str(address.slice(colon + 1)); })
                        .orDefault(kj::str(defaultPort));
        KJ_FAIL_REQUIRE(kj::str(flag, "cannot listen on ", address, ": ", reason, ": port ", port,
                                " is in use by another process (another runnerd?); stop it or "
                                "choose another port"));
      }
      KJ_FAIL_REQUIRE(kj::str(flag, "cannot listen on ", address, ": ", reason));
    }
    return listener;
  }

  void serve() {
    // Taken from the start: a SIGHUP during start-up is a reload once runnerd serves, not death.
    kj::UnixEventPort::captureSignal(SIGHUP);
    tls::tuneAllocatorForStreaming();
    uint64_t descriptors = raiseDescriptorLimit();
    auto io = kj::setupAsyncIo();
    EventLog log(STDERR_FILENO);
    // One user must never be able to take every descriptor: what one user may hold at most, with
    // the reserve, must fit under the limit.
    uint64_t perUser = serverLimits.connectionsPerUser + serverLimits.perConnection.watchesPerUser +
                       uint64_t(maxRunningPerUser) * DESCRIPTORS_PER_RUNNING_JOB;
    if (perUser + DESCRIPTOR_RESERVE > descriptors) {
      KJ_FAIL_REQUIRE(kj::str(
          "one user could hold ", perUser, " descriptors (--max-connections-per-user ",
          serverLimits.connectionsPerUser, ", --max-watches-per-user ",
          serverLimits.perConnection.watchesPerUser, ", --max-running-per-user ", maxRunningPerUser,
          " with up to ", DESCRIPTORS_PER_RUNNING_JOB, " each), and with ", DESCRIPTOR_RESERVE,
          " kept for the others that is more than the descriptor limit of ", descriptors,
          "; lower those flags or raise the limit (LimitNOFILE=)"));
    }

    // A root runnerd hands its jobs to a root supervisor and becomes DAEMON_USER for good; an
    // unprivileged one runs them itself, as its own user.
#ifdef RUNNER_BENCH_EXECUTORS_IN_PROCESS
    // Only in //runner:runnerd-in-process, which scripts/bench runs beside runnerd to measure
    // what the supervisor's hop costs: root, and running the jobs itself.
    bool supervised = false;
#else
    bool supervised = geteuid() == 0;
#endif
    kj::Maybe<DaemonUser> daemon;
    if (supervised) daemon = daemonUser();

    prepareDirectory("--log-dir", logDir, 0750);
    // Jobs pass through the state directory to their homes (dynamic identities).
    prepareDirectory("--state-dir", stateDir, 0711);
    KJ_IF_MAYBE (d, daemon) {
      requireOwnDirectory("--log-dir", logDir, d->uid);
      requireOwnDirectory("--state-dir", stateDir, d->uid);
      giveFilesTo(*d);
    } else {
      prepareDirectory("the database directory", databaseDir(), 0700);
    }
    // Read while root: the key may be root's alone (then a reload cannot read it again).
    auto tls = kj::heap<tls::ServerTls>(tlsFiles(), io.provider->getTimer());
    prepareIdentities();

    // Bound while root: the ports may be privileged ones.
    auto listener = listenOn(io, "", listen, 7443);
    kj::Maybe<kj::Own<kj::ConnectionReceiver>> metricsListener;
    KJ_IF_MAYBE (address, metricsListen) {
      metricsListener = listenOn(io, "--metrics-listen ", *address, 9464);
    }

    pid_t startedSupervisor = 0;
    KJ_IF_MAYBE (d, daemon) {
      auto binary = supervisorBinaryBesideSelf();
      startedSupervisor = ensureSupervisor(stateDir, binary, supervisorArgs(*d));
      if (startedSupervisor != 0) {
        log("started the supervisor ", binary, " pid=", startedSupervisor);
      } else {
        log("a supervisor runs on ", stateDir, " already");
      }
      dropPrivileges(*d);
      log("runnerd runs as ", d->name, " (uid ", d->uid, ", gid ", d->gid,
          ") with no capabilities");
    }

    auto store = openStore();
    auto identities = makeIdentities(*store, log, supervised);

    // Connections to the executors that run elsewhere: they outlive the executor set.
    kj::Vector<kj::Own<executor_rpc::ExecutorConnection>> connections;
    executors::ExecutorSet executorSet;
    auto connectionTo = [&](kj::StringPtr path) -> executor_rpc::ExecutorConnection& {
      for (auto& c : connections) {
        if (c->path() == path) return *c;
      }
      connections.add(kj::heap<executor_rpc::ExecutorConnection>(
          *io.lowLevelProvider, io.provider->getTimer(), path,
          [&log](kj::StringPtr line) { log.write(line); }));
      return *connections.back();
    };
    for (auto& socket : executorSockets) {
      auto remote = connectionTo(socket.path).executor(socket.name).wait(io.waitScope);
      log("executor ", socket.name, " runs its jobs through ", socket.path);
      executorSet.add(kj::mv(remote));
    }
    auto namedBySocket = [this](kj::StringPtr name) {
      for (auto& socket : executorSockets) {
        if (socket.name == name) return true;
      }
      return false;
    };
    if (supervised) {
      // The supervisor serves this host's executors (local, and cgroup where it can).
      auto path = supervisorSocketPath(stateDir);
      // A supervisor just started needs a moment to listen.
      for (int attempt = 0;; attempt++) {
        auto failure = kj::runCatchingExceptions([&]() { connectionTo(path); });
        if (failure == nullptr) break;
        if (attempt >= 1000 ||
            (startedSupervisor != 0 && kill(startedSupervisor, 0) < 0 && errno == ESRCH)) {
          KJ_FAIL_REQUIRE(
              kj::str("the supervisor does not answer on ", path, ": ",
                      KJ_ASSERT_NONNULL(failure).getDescription(),
                      startedSupervisor != 0 ? "; it exited (see its lines above)" : ""));
        }
        usleep(10000);
      }
      auto& connection = connectionTo(path);
      for (auto& name : connection.names().wait(io.waitScope)) {
        if (namedBySocket(name)) continue;
        executorSet.add(connection.executor(name).wait(io.waitScope));
      }
      log("executors ", kj::strArray(executorSet.names(), ", "), " run their jobs through ", path);
    } else {
      executors::HostExecutorOptions hostOptions;
      hostOptions.cgroupParent = cgroupParent.map([](kj::String& p) -> kj::StringPtr { return p; })
                                     .orDefault(executors::cgroup::DEFAULT_CGROUP_PARENT);
      hostOptions.wanted = [&](kj::StringPtr name) { return !namedBySocket(name); };
      // Without a writable cgroup hierarchy, runnerd still serves the local executor, unless
      // cgroup was asked for.
      hostOptions.requireCgroup = executor == "cgroup";
      hostOptions.log = [&log](kj::StringPtr line) { log.write(line); };
      executors::addHostExecutors(executorSet, io.unixEventPort, io.provider->getTimer(),
                                  kj::mv(hostOptions));
    }
    if (executorSet.find(executor) == nullptr) {
      KJ_FAIL_REQUIRE(kj::str("unknown executor '", executor,
                              "' (known: ", kj::strArray(executorSet.names(), ", "), ")"));
    }

    OutputWatcher watcher(io.unixEventPort);
    JobTableConfig config;
    config.logDir = kj::str(logDir);
    config.identities = kj::mv(identities);
    config.defaultExecutor = kj::str(executor);
    config.defaultGrace = graceSeconds * kj::SECONDS;
    config.maxRunningPerUser = maxRunningPerUser;
    config.maxOutputBytes = maxOutputBytes;
    config.maxStoredPerUser = maxStoredPerUser;
    config.maxStoredBytesPerUser = maxStoredBytesPerUser;
    config.maxStoredBytes = maxStoredBytes;
    config.retainFor = retainFor;
    config.retainJobs = retainJobs;
    JobTable table(kj::mv(config), executorSet, *store, io.provider->getTimer(), watcher, log);
    // Unwinding or stopping, the jobs the executors keep are left to them.
    KJ_DEFER(for (auto& connection : connections) connection->leaveJobs());
    table.load().wait(io.waitScope);

    DescriptorGauge gauge(descriptors, DESCRIPTORS_REFUSED_AT);
    serverLimits.perConnection.descriptors = &gauge;
    log("limits: ", serverLimits.connections, " connections, per user ",
        serverLimits.connectionsPerUser, " connections, ",
        serverLimits.perConnection.watchesPerUser, " watches, ", maxRunningPerUser,
        " running jobs (", perUser, " of ", descriptors,
        " descriptors); idle connections close after ", serverLimits.idleTimeout,
        "; output per job ", maxOutputBytes, " bytes");
    Server server(
        table, *tls, io.provider->getTimer(), log, KJ_MAP(name, admins) { return kj::str(name); },
        kj::mv(serverLimits));
    // Off the event loop's path: what it shows is kept as things change (service-metrics.h).
    MetricsSources metricsSources{table, server, connections.asPtr(), gauge, nullptr};
    kj::Maybe<kj::Own<MetricsHttp>> metrics;
    kj::Promise<void> servingMetrics = kj::NEVER_DONE;
    KJ_IF_MAYBE (receiver, metricsListener) {
      auto& http = *metrics.emplace(kj::heap<MetricsHttp>(
          io.provider->getTimer(), [&metricsSources]() { return renderMetrics(metricsSources); },
          [&metricsSources]() { return unhealthyReason(metricsSources); }));
      metricsSources.http = http;
      servingMetrics = http.listen(**receiver);
      auto& address = KJ_ASSERT_NONNULL(metricsListen);
      auto& bounds = http.limits();
      // Said before runnerd's "listening on" line, which tells that runnerd serves.
      log("metrics served over plain HTTP on ",
          address.slice(0, address.findLast(':').orDefault(address.size())), ":",
          (*receiver)->getPort(), " (/metrics, /healthz; at most ", bounds.connections,
          " connections, ", bounds.requestBytes, " bytes and ", bounds.requestTimeout,
          " per request)");
    }
    auto host = listen.slice(0, listen.findLast(':').orDefault(listen.size()));
    log("runnerd listening on ", host, ":", listener->getPort(), " executor=", executor,
        "; jobs run as ", table.config().identities->describe());

    kj::UnixEventPort::captureSignal(SIGTERM);
    kj::UnixEventPort::captureSignal(SIGINT);
    auto stopSignal =
        io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
    auto reloads = reloadOnSignal(io.unixEventPort, io.provider->getTimer(), server, tls, log)
                       .eagerlyEvaluate([&log](kj::Exception&& e) {
                         log("reloading failed for good (SIGHUP is ignored from now on): ",
                             e.getDescription());
                       });
    auto signal = server.listen(*listener)
                      .exclusiveJoin(kj::mv(servingMetrics))
                      .then([]() -> siginfo_t { KJ_UNREACHABLE; })
                      .exclusiveJoin(kj::mv(stopSignal))
                      .wait(io.waitScope);
    // Jobs another process runs (the supervisor's) keep running: the next runnerd takes them
    // back. Those runnerd runs itself end with it.
    size_t kept = 0;
    for (auto job : table.all()) {
      if (job->hasEnded()) continue;
      KJ_IF_MAYBE (e, executorSet.find(job->record().executor)) {
        if (e->keepsJobs()) ++kept;
      }
    }
    log("runnerd shutting down on signal ", signal.si_signo, ": ", kept,
        " running jobs are left to their executors; stopping the others");
    kj::Vector<kj::Promise<void>> stopping;
    for (auto job : table.all()) {
      bool keptElsewhere = false;
      KJ_IF_MAYBE (e, executorSet.find(job->record().executor)) {
        keptElsewhere = e->keepsJobs();
      }
      // A job whose end cannot be recorded (the state store is not answering) has ended all
      // the same: the others are still waited for.
      if (!job->hasEnded() && !keptElsewhere) {
        stopping.add(job->stop(2 * kj::SECONDS).catch_([&log, job](kj::Exception&& e) {
          log("job ", job->id(),
              " stopped, but its end was not on disk in time: ", e.getDescription());
        }));
      }
    }
    kj::joinPromises(stopping.releaseAsArray()).wait(io.waitScope);
    log("runnerd stopped");
  }
};

}  // namespace
}  // namespace runner

int main(int argc, char* argv[]) {
  kj::TopLevelProcessContext context(argv[0]);
  runner::Runnerd runnerd(context, kj::arrayPtr(argv, argc));
  return kj::runMainAndExit(context, runnerd.getMain(), argc, argv);
}

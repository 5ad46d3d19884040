// runner-supervisor's own life, driven through its socket with schema/executor.capnp as runnerd
// would: what it grants (uids, groups, homes), its re-exec on SIGHUP with jobs running, its crash
// (kill -9) and the next supervisor's cleanup, and SIGTERM with a grace. Real processes, real
// cgroups (v1 here), real files.

#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "executor-rpc/executor-service.h"
#include "executors/spawn.h"
#include "schema/executor.capnp.h"
#include "schema/held-job.capnp.h"
#include "tests/loop-disk.h"

namespace runner {
namespace {

constexpr kj::Duration DEADLINE = 10 * kj::SECONDS;

kj::String readFile(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kj::str();
  kj::AutoCloseFd owned(fd);
  kj::Vector<char> text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) text.addAll(kj::arrayPtr(buffer, n));
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

// For gtest's comparisons, which do not know kj::String.
std::string fileText(kj::StringPtr path) {
  return readFile(path).cStr();
}

bool contains(kj::StringPtr text, kj::StringPtr part) {
  return strstr(text.cStr(), part.cStr()) != nullptr;
}

// Pids of the processes whose command line contains `marker`.
kj::Vector<pid_t> processesWith(kj::StringPtr marker) {
  kj::Vector<pid_t> found;
  DIR* dir = opendir("/proc");
  KJ_ASSERT(dir != nullptr);
  KJ_DEFER(closedir(dir));
  while (struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    auto raw = readFile(kj::str("/proc/", entry->d_name, "/cmdline"));
    kj::Vector<char> line;
    for (char c : raw) line.add(c == '\0' ? ' ' : c);
    line.add('\0');
    if (strstr(line.begin(), marker.cStr()) != nullptr) found.add(atoi(entry->d_name));
  }
  return found;
}

// How many of them run `sleep` by now: a shell's fork that has not exec'd yet, or `setsid -f`
// before its parent exits, also carries the marker, so a count of all of them can pass a number
// on the way to it; once every sleep has started, the others are the shells.
size_t sleepsWith(kj::StringPtr marker) {
  size_t sleeps = 0;
  for (pid_t pid : processesWith(marker)) {
    if (readFile(kj::str("/proc/", pid, "/comm")) == "sleep\n") sleeps++;
  }
  return sleeps;
}

// Each of them as its pid and /proc/PID/stat line (command, state, parent, ...), for a failure
// message.
kj::String describeWith(kj::StringPtr marker) {
  kj::Vector<kj::String> lines;
  for (pid_t pid : processesWith(marker)) {
    auto stat = readFile(kj::str("/proc/", pid, "/stat"));
    lines.add(kj::str(pid, " ", stat));
  }
  return kj::strArray(lines, "; ");
}

// Waits (polling, up to 10 s) until `done()` holds; false if it never did.
template <typename Func>
bool eventually(Func&& done) {
  for (int i = 0; i < 1000; i++) {
    if (done()) return true;
    usleep(10000);
  }
  return done();
}

kj::String supervisorBinary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test through bazel");
  return kj::str(srcdir, "/runner/runner/runner-supervisor");
}

// Uids of this test process's jobs: a range of its own, so that tests running at once never share
// one.
uint32_t firstUid() {
  return 2141000000u + uint32_t(getpid() % 100000) * 100;
}

// A runner-supervisor of the test's own: a copy of the binary (so that a test can break it), a
// fresh state directory, a cgroup parent of its own, runnerd's user root (the test connects).
class SupervisorProcess {
 public:
  explicit SupervisorProcess(kj::ArrayPtr<const kj::StringPtr> extraFlags = nullptr)
      : extraFlags(KJ_MAP(flag, extraFlags) { return kj::str(flag); }) {
    mkdir("/var/lib/runner-tests", 0755);
    auto tmpl = kj::str("/var/lib/runner-tests/supervisor-lifecycle.XXXXXX");
    KJ_ASSERT(mkdtemp(tmpl.begin()) != nullptr, strerror(errno));
    KJ_SYSCALL(chmod(tmpl.cStr(), 0755));
    root = kj::mv(tmpl);
    cgroupParent = kj::str("/runner-lifecycle-test-", getpid(), "-", counter++);
    KJ_SYSCALL(mkdir(kj::str(root, "/bin").cStr(), 0755));
    binary = kj::str(root, "/bin/runner-supervisor");
    KJ_ASSERT(system(kj::str("cp ", supervisorBinary(), " ", binary).cStr()) == 0);
    stateDir = kj::str(root, "/state");
    socket = kj::str(stateDir, "/supervisor/executor.sock");
  }

  ~SupervisorProcess() noexcept(false) {
    if (pid != 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    // Nothing of the test's jobs may outlive it, whatever happened.
    system(kj::str("pkill -KILL -f '", root, "' >/dev/null 2>&1").cStr());
    for (auto& hierarchy : cgroupHierarchies()) {
      auto parent = kj::str(hierarchy, cgroupParent);
      system(kj::str("find ", parent, " -depth -type d -exec rmdir {} + 2>/dev/null").cStr());
    }
    system(kj::str("rm -rf '", root, "'").cStr());
  }

  void start() {
    auto stateFlag = kj::str("--state-dir=", stateDir);
    auto parentFlag = kj::str("--cgroup-parent=", cgroupParent);
    auto uidsFlag = kj::str("--uid-range=", firstUid(), "-", firstUid() + 99);
    kj::Vector<char*> argv;
    argv.add(binary.begin());
    argv.add(stateFlag.begin());
    argv.add(const_cast<char*>("--runnerd-user=root"));
    argv.add(uidsFlag.begin());
    argv.add(parentFlag.begin());
    for (auto& flag : extraFlags) argv.add(flag.begin());
    argv.add(nullptr);
    auto logPath = log();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, logPath.cStr(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    logOffset = logText().size();
    int error = posix_spawn(&pid, binary.cStr(), &actions, nullptr, argv.begin(), environ);
    posix_spawn_file_actions_destroy(&actions);
    KJ_ASSERT(error == 0, "cannot start runner-supervisor", strerror(error));
    bool serving = eventually([&]() {
      if (contains(recentLog(), "serving")) return true;
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = 0;
        KJ_FAIL_ASSERT("runner-supervisor exited", recentLog());
      }
      return false;
    });
    KJ_ASSERT(serving, "runner-supervisor did not start serving within 10 s", logText());
  }

  // kill -9, as a crash would; reaps it. Its jobs are left as they are.
  void crash() {
    KJ_SYSCALL(kill(pid, SIGKILL));
    KJ_SYSCALL(waitpid(pid, nullptr, 0));
    pid = 0;
  }

  // Waits up to `seconds` for it to exit; its wait status, or -1 if it did not.
  int waitExit(int seconds = 10) {
    for (int i = 0; i < seconds * 100; i++) {
      int status;
      pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        pid = 0;
        return status;
      }
      usleep(10000);
    }
    return -1;
  }

  kj::String log() const { return kj::str(root, "/supervisor.stderr"); }
  kj::String logText() const { return readFile(log()); }
  // What it logged since its last start.
  kj::String recentLog() const { return kj::str(logText().slice(logOffset)); }

  void waitForLog(kj::StringPtr text) const {
    if (!eventually([&]() { return contains(recentLog(), text); })) {
      KJ_FAIL_ASSERT("runner-supervisor did not log this within 10 s", text, logText());
    }
  }

  kj::String homes() const { return kj::str(stateDir, "/homes"); }

  // Its --state-dir: <root>/state unless a test moves it (then setStateDir(), before start()).
  void setStateDir(kj::StringPtr dir) {
    stateDir = kj::str(dir);
    socket = kj::str(stateDir, "/supervisor/executor.sock");
  }

  // The supervisor's record of job `id` (schema/held-job.capnp) holds its end.
  bool recordSaysEnded(kj::StringPtr id) const {
    auto text = readFile(kj::str(stateDir, "/supervisor/held/", id));
    if (text.size() == 0 || text.size() % sizeof(capnp::word) != 0) return false;
    auto words = kj::heapArray<capnp::word>(text.size() / sizeof(capnp::word));
    memcpy(words.begin(), text.begin(), text.size());
    // The file holds each version of the record in turn; the last is the record.
    kj::ArrayPtr<const capnp::word> rest = words;
    bool ended = false;
    while (rest.size() > 0) {
      capnp::FlatArrayMessageReader message(rest);
      ended = message.getRoot<wire::HeldJobRecord>().getState().isEnded();
      rest = kj::arrayPtr(message.getEnd(), rest.end());
    }
    return ended;
  }

  // The cgroup directories named `jobId` in every hierarchy, that exist.
  kj::Vector<kj::String> cgroupsOf(kj::StringPtr jobId) const {
    kj::Vector<kj::String> found;
    for (auto& hierarchy : cgroupHierarchies()) {
      auto path = kj::str(hierarchy, cgroupParent, "/", jobId);
      struct stat st;
      if (stat(path.cStr(), &st) == 0) found.add(kj::mv(path));
    }
    return found;
  }

  kj::String root;
  kj::String stateDir;
  kj::String binary;
  kj::String socket;
  kj::String cgroupParent;
  pid_t pid = 0;

 private:
  kj::Array<kj::String> extraFlags;
  size_t logOffset = 0;
  static inline uint counter = 0;

  static kj::Vector<kj::String> cgroupHierarchies() {
    kj::Vector<kj::String> found;
    DIR* dir = opendir("/sys/fs/cgroup");
    if (dir == nullptr) return found;
    KJ_DEFER(closedir(dir));
    while (struct dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      found.add(kj::str("/sys/fs/cgroup/", entry->d_name));
    }
    return found;
  }
};

// Hands a job's output descriptor to the supervisor, as runnerd does.
class OutputFileServer final : public wire::OutputFile::Server {
 public:
  explicit OutputFileServer(kj::AutoCloseFd fd) : fd(kj::mv(fd)) {}
  kj::Maybe<int> getFd() override { return fd.get(); }

 private:
  kj::AutoCloseFd fd;
};

struct JobSpec {
  kj::StringPtr id;
  kj::StringPtr executor = "local";
  kj::Array<kj::String> argv;
  uint32_t uid = firstUid();
  uint32_t gid = firstUid();
  kj::Array<uint32_t> groups;
  kj::String home = kj::str("/");
  uint32_t pids = 0;
};

// One connection to the supervisor, as runnerd's would be.
class Connection {
 public:
  Connection(kj::AsyncIoContext& io, kj::StringPtr socket)
      : io(io),
        stream(connect(io, socket)),
        client(*stream, 1),
        host(client.bootstrap().castAs<wire::ExecutorHost>()) {}

  template <typename T>
  T wait(kj::Promise<T> promise) {
    return promise
        .exclusiveJoin(io.provider->getTimer().afterDelay(deadline).then(
            [this]() -> T { KJ_FAIL_ASSERT("the supervisor did not answer in time", deadline); }))
        .wait(io.waitScope);
  }

  wire::Executor::Client executor(kj::StringPtr name) {
    auto request = host.executorRequest();
    request.setName(name);
    return request.send().getExecutor();
  }

  // Sends the launch of `spec` with its output appended to `outputPath`.
  kj::Promise<capnp::Response<wire::Executor::LaunchResults>> sendLaunch(JobSpec spec,
                                                                          kj::StringPtr outputPath) {
    int fd = open(outputPath.cStr(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    KJ_ASSERT(fd >= 0, strerror(errno));
    auto call = executor(spec.executor).launchRequest();
    auto request = call.initRequest();
    request.setJobId(spec.id);
    auto argv = request.initArgv(spec.argv.size());
    for (auto i : kj::indices(spec.argv)) argv.set(i, spec.argv[i]);
    auto env = request.initEnv(2);
    env.set(0, "PATH=/usr/bin:/bin");
    env.set(1, kj::str("HOME=", spec.home));
    request.setWorkingDir("/");
    request.setOutput(kj::heap<OutputFileServer>(kj::AutoCloseFd(fd)));
    auto credentials = request.initCredentials();
    credentials.setUid(spec.uid);
    credentials.setGid(spec.gid);
    auto groups = credentials.initSupplementaryGroups(spec.groups.size());
    for (auto i : kj::indices(spec.groups)) groups.set(i, spec.groups[i]);
    credentials.setUserName("job");
    credentials.setHomeDir(spec.home);
    request.initLimits().setPids(spec.pids);
    return call.send();
  }

  // Launches `spec` with its output appended to `outputPath`: its Job and pid, or an exception.
  kj::Maybe<kj::Exception> tryLaunch(JobSpec spec, kj::StringPtr outputPath, wire::Job::Client& job,
                                     pid_t& pid) {
    return kj::runCatchingExceptions([&]() {
      auto response = wait(sendLaunch(kj::mv(spec), outputPath));
      auto result = response.getResult();
      KJ_ASSERT(result.isStarted(), "the job did not start", result.getFailed().getMessage());
      job = result.getStarted().getJob();
      pid = result.getStarted().getInfo().getPid();
    });
  }

  wire::Job::Client launch(JobSpec spec, kj::StringPtr outputPath, pid_t& pid) {
    wire::Job::Client job = nullptr;
    KJ_IF_MAYBE (e, tryLaunch(kj::mv(spec), outputPath, job, pid)) {
      KJ_FAIL_ASSERT("launch failed", *e);
    }
    return job;
  }

  // The job's end (wait), as a copy.
  struct End {
    bool signaled;
    int exitCode;
    int termSignal;
    std::string lost;
  };
  End end(wire::Job::Client& job) {
    auto response = wait(job.waitRequest().send());
    auto end = response.getEnd();
    return End{end.getSignaled(), end.getExitCode(), end.getTermSignal(), end.getLost().cStr()};
  }

  void signal(wire::Job::Client& job, int number) {
    auto request = job.signalRequest();
    request.setSignal(number);
    wait(request.send());
  }

  void acknowledge(wire::Job::Client& job) { wait(job.acknowledgeRequest().send()); }

  // How long wait() lets the supervisor take before the test fails.
  kj::Duration deadline = DEADLINE;

  wire::Job::Client adopt(kj::StringPtr executorName, kj::StringPtr id, pid_t& pid) {
    auto request = executor(executorName).adoptRequest();
    request.setJobId(id);
    auto response = wait(request.send());
    pid = response.getStarted().getPid();
    return response.getJob();
  }

  struct Listed {
    std::string id;
    pid_t pid;
    bool ended;
    int exitCode;
    std::string lost;
  };
  std::vector<Listed> list(kj::StringPtr executorName) {
    auto response = wait(executor(executorName).listRequest().send());
    std::vector<Listed> jobs;
    for (auto job : response.getJobs()) {
      jobs.push_back(Listed{job.getJobId().cStr(), job.getStarted().getPid(), job.getEnded(),
                            job.getEnd().getExitCode(), job.getEnd().getLost().cStr()});
    }
    return jobs;
  }

 private:
  kj::AsyncIoContext& io;
  kj::Own<kj::AsyncCapabilityStream> stream;
  capnp::TwoPartyClient client;
  wire::ExecutorHost::Client host;

  static kj::Own<kj::AsyncCapabilityStream> connect(kj::AsyncIoContext& io, kj::StringPtr socket) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    KJ_ASSERT(fd >= 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, socket.cStr(), sizeof(address.sun_path) - 1);
    KJ_SYSCALL(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), socket);
    return io.lowLevelProvider->wrapUnixSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  }
};

kj::Array<kj::String> shell(kj::StringPtr script) {
  return kj::arr(kj::str("/bin/sh"), kj::str("-c"), kj::str(script));
}

class SupervisorLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "runner-supervisor switches users: needs root";
  }

  // A string no other process's command line holds: sleep takes it as a number of seconds.
  kj::String marker() { return kj::str("1000.", getpid(), markers++); }

  // std::unique_ptr: gtest's fixture destructor is noexcept, kj's are not.
  std::unique_ptr<kj::AsyncIoContext> io = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  uint markers = 1;
};

TEST_F(SupervisorLifecycle, UidsOutsideTheRangeAndRootGroupsAreRefused) {
  SupervisorProcess supervisor;
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  auto output = kj::str(supervisor.root, "/out");
  wire::Job::Client job = nullptr;
  pid_t pid;

  JobSpec outside;
  outside.id = "outside";
  outside.argv = kj::arr(kj::str("/bin/true"));
  outside.uid = firstUid() + 100;
  outside.gid = firstUid();
  auto refusal = kj::str("launch refused: uid ", firstUid() + 100,
                         " is outside the uids this supervisor grants (", firstUid(), "-",
                         firstUid() + 99, ")");
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(outside), output, job, pid)) {
    EXPECT_TRUE(e->getDescription().endsWith(refusal)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a uid outside --uid-range was granted";
  }
  supervisor.waitForLog(kj::str("launch refused id=outside: ", refusal.slice(16)));

  JobSpec rootGroup;
  rootGroup.id = "root-group";
  rootGroup.argv = kj::arr(kj::str("/bin/true"));
  rootGroup.gid = 0;
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(rootGroup), output, job, pid)) {
    EXPECT_TRUE(contains(e->getDescription(), "launch refused: a job may not run as root"))
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "gid 0 was granted";
  }

  JobSpec rootAmongGroups;
  rootAmongGroups.id = "root-among-groups";
  rootAmongGroups.argv = kj::arr(kj::str("/bin/true"));
  rootAmongGroups.groups = kj::arr(uint32_t(firstUid()), uint32_t(0));
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(rootAmongGroups), output, job, pid)) {
    EXPECT_TRUE(
        contains(e->getDescription(), "launch refused: a job may not run with group root (gid 0)"))
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "supplementary group 0 was granted";
  }
  supervisor.waitForLog("launch refused id=root-among-groups");

  // Groups are privileges too: no group outside the range a dynamic uid was granted (42 is
  // Debian's shadow, 6 its disk), as primary or supplementary group.
  JobSpec shadowGroup;
  shadowGroup.id = "shadow-group";
  shadowGroup.argv = kj::arr(kj::str("/bin/true"));
  shadowGroup.gid = 42;
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(shadowGroup), output, job, pid)) {
    EXPECT_TRUE(contains(e->getDescription(), "launch refused: gid 42 is outside the ids"))
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "gid 42 was granted";
  }
  supervisor.waitForLog("launch refused id=shadow-group: gid 42 is outside the ids");

  JobSpec diskAmongGroups;
  diskAmongGroups.id = "disk-among-groups";
  diskAmongGroups.argv = kj::arr(kj::str("/bin/true"));
  diskAmongGroups.groups = kj::arr(uint32_t(firstUid()), uint32_t(6));
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(diskAmongGroups), output, job, pid)) {
    EXPECT_TRUE(contains(e->getDescription(), "launch refused: group 6 is outside the ids"))
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "supplementary group 6 was granted";
  }
  supervisor.waitForLog("launch refused id=disk-among-groups: group 6 is outside the ids");

  // Nothing was recorded for the refused launches, and a uid inside the range runs.
  EXPECT_EQ(connection.list("local").size(), 0u);
  JobSpec inside;
  inside.id = "inside";
  inside.argv = shell("id -u");
  job = connection.launch(kj::mv(inside), output, pid);
  EXPECT_EQ(connection.end(job).exitCode, 0);
  EXPECT_EQ(fileText(output), std::to_string(firstUid()) + "\n");
}

// The supervisor keeps what NSS said of a uid for a while (a lookup of a uid without an account
// walks every source), but not past a change of /etc/passwd: a uid of the range that gets an
// account is held to that account's groups at its next launch.
TEST_F(SupervisorLifecycle, AUidThatGetsAnAccountIsHeldToItsGroupsAtOnce) {
  if (access("/usr/sbin/useradd", X_OK) != 0) GTEST_SKIP() << "useradd is not installed";
  struct passwd* jobs = getpwnam("runner-jobs");
  if (jobs == nullptr) GTEST_SKIP() << "the user runner-jobs does not exist (scripts/install-deps)";
  uint32_t uid = firstUid() + 7;
  SupervisorProcess supervisor;
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  auto output = kj::str(supervisor.root, "/out");
  pid_t pid;

  auto spec = [&](kj::StringPtr id) {
    JobSpec job;
    job.id = id;
    job.argv = shell("id -g");
    job.uid = uid;
    job.gid = uid;
    job.groups = kj::arr(uid);
    return job;
  };
  // Without an account, its own id as group is granted: it is in the range.
  auto job = connection.launch(spec("before-account"), output, pid);
  EXPECT_EQ(connection.end(job).exitCode, 0);
  EXPECT_EQ(fileText(output), std::to_string(uid) + "\n");

  auto name = kj::str("rtest", getpid());
  auto add = kj::str("/usr/sbin/useradd --no-create-home --no-user-group --uid ", uid,
                     " --gid runner-jobs --home-dir /nonexistent --shell /usr/sbin/nologin ", name,
                     " 2>/dev/null");
  ASSERT_EQ(system(add.cStr()), 0) << add.cStr();
  KJ_DEFER(system(kj::str("/usr/sbin/userdel ", name, " 2>/dev/null").cStr()));

  KJ_IF_MAYBE (e, connection.tryLaunch(spec("after-account"), output, job, pid)) {
    EXPECT_TRUE(contains(e->getDescription(),
                         kj::str("launch refused: gid ", uid, " is not the primary group of uid ",
                                 uid, " (", jobs->pw_gid, ")")))
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "the uid's new account was not consulted";
  }
}

// A probe's shared lock on the pid file (the unit's ExecStartPost, `flock -s`) for a moment is
// waited out; a start during it failed with "another supervisor holds" before.
TEST_F(SupervisorLifecycle, APidFileProbeDoesNotStopTheSupervisorStarting) {
  if (system("command -v flock >/dev/null") != 0) GTEST_SKIP() << "flock is not installed";
  SupervisorProcess supervisor;
  ASSERT_EQ(mkdir(supervisor.stateDir.cStr(), 0711), 0) << strerror(errno);
  auto probe = kj::str("flock -s ", supervisor.stateDir, "/supervisor.pid sleep 0.5 &");
  ASSERT_EQ(system(probe.cStr()), 0);
  usleep(100000);
  supervisor.start();
}

TEST_F(SupervisorLifecycle, HomesAreMadePrivateOrRefusedWhenSomeoneElseOwnsThem) {
  SupervisorProcess supervisor;
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  auto output = kj::str(supervisor.root, "/out");
  pid_t pid;

  JobSpec spec;
  spec.id = "with-home";
  spec.argv = shell("echo hello > \"$HOME/greeting\" && cat \"$HOME/greeting\"");
  spec.uid = firstUid() + 1;
  spec.gid = firstUid() + 2;
  auto home = kj::str(supervisor.homes(), "/", firstUid() + 1);
  spec.home = kj::str(home);
  auto job = connection.launch(kj::mv(spec), output, pid);
  EXPECT_EQ(connection.end(job).exitCode, 0);
  EXPECT_EQ(fileText(output), "hello\n");
  struct stat st;
  ASSERT_EQ(lstat(home.cStr(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, firstUid() + 1);
  EXPECT_EQ(st.st_gid, firstUid() + 2);

  // A home that is there but not the job's own is refused, and left as it is.
  auto taken = kj::str(supervisor.homes(), "/", firstUid() + 3);
  KJ_SYSCALL(mkdir(taken.cStr(), 0755));
  JobSpec intruder;
  intruder.id = "intruder";
  intruder.argv = kj::arr(kj::str("/bin/true"));
  intruder.uid = firstUid() + 3;
  intruder.gid = firstUid() + 3;
  intruder.home = kj::str(taken);
  wire::Job::Client refused = nullptr;
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(intruder), output, refused, pid)) {
    auto line = kj::str("launch refused: the home ", taken, " is not a directory owned by uid ",
                        firstUid() + 3, " and gid ", firstUid() + 3, "; refusing to use it");
    EXPECT_TRUE(e->getDescription().endsWith(line)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a launch into root's directory was accepted";
  }
  ASSERT_EQ(lstat(taken.cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  // Refused before its record was written: none names it.
  auto record = kj::str(supervisor.stateDir, "/supervisor/held/intruder");
  EXPECT_NE(access(record.cStr(), F_OK), 0) << record.cStr();
  supervisor.waitForLog("launch refused id=intruder: the home");
  EXPECT_EQ(connection.list("local").size(), 1u);  // with-home, not acknowledged
}

TEST_F(SupervisorLifecycle, HomesThatOthersMayWriteAreRefusedAtStart) {
  mkdir("/var/lib/runner-tests", 0755);
  char dir[] = "/var/lib/runner-tests/open-homes.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  KJ_DEFER(rmdir(dir));
  KJ_SYSCALL(chmod(dir, 0777));
  auto flag = kj::str("--homes=", dir);
  kj::StringPtr flags[] = {flag};
  SupervisorProcess supervisor(flags);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { supervisor.start(); })) {
    EXPECT_TRUE(contains(e->getDescription(), kj::str("runner-supervisor: --homes ", dir,
                                                      " must be owned by root and writable by "
                                                      "nobody else (it is owned by uid 0, mode "
                                                      "0777)")))
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a supervisor started with homes anyone may write";
  }
}

// The jobs that these tests watch across a re-exec: each says "before", and on SIGTERM "term",
// then exits 7. (The shell's word on its sleep killed by the same SIGTERM goes to /dev/null.)
kj::Array<kj::String> trapping() {
  return shell(
      "trap 'echo term; exit 7' TERM; echo before; while :; do sleep 0.05; done 2>/dev/null");
}

pid_t parentOf(pid_t pid) {
  auto stat = readFile(kj::str("/proc/", pid, "/stat"));
  auto close = strrchr(stat.cStr(), ')');
  if (close == nullptr) return 0;
  char state;
  int parent = 0;
  sscanf(close + 1, " %c %d", &state, &parent);
  return parent;
}

TEST_F(SupervisorLifecycle, ReexecKeepsRunningAndEndedJobsAndTheirOutput) {
  SupervisorProcess supervisor;
  supervisor.start();
  auto output = [&](kj::StringPtr id) { return kj::str(supervisor.root, "/", id, ".out"); };
  pid_t localPid, cgroupPid, endingPid, endedPid;
  uint64_t localStart;
  {
    Connection connection(*io, supervisor.socket);
    JobSpec local;
    local.id = "local-job";
    local.argv = trapping();
    connection.launch(kj::mv(local), output("local-job"), localPid);
    JobSpec cgroup;
    cgroup.id = "cgroup-job";
    cgroup.executor = "cgroup";
    cgroup.argv = trapping();
    cgroup.pids = 64;
    connection.launch(kj::mv(cgroup), output("cgroup-job"), cgroupPid);
    JobSpec ended;
    ended.id = "ended-job";
    ended.argv = shell("exit 3");
    auto endedJob = connection.launch(kj::mv(ended), output("ended-job"), endedPid);
    EXPECT_EQ(connection.end(endedJob).exitCode, 3);
    // Ends while the supervisor re-execs, or just after.
    JobSpec ending;
    ending.id = "ending-job";
    ending.argv = shell("sleep 0.3; echo done; exit 5");
    connection.launch(kj::mv(ending), output("ending-job"), endingPid);
    ASSERT_TRUE(eventually([&]() {
      return readFile(output("local-job")) == "before\n" &&
             readFile(output("cgroup-job")) == "before\n";
    }));
    localStart = KJ_ASSERT_NONNULL(executors::processStartTime(localPid));

    KJ_SYSCALL(kill(supervisor.pid, SIGHUP));
    supervisor.waitForLog("re-exec'd, serving");
  }
  auto log = supervisor.recentLog();
  EXPECT_TRUE(contains(log, kj::str("re-executing ", supervisor.binary, " (pid ", supervisor.pid,
                                    ") with 4 jobs held")))
      << log.cStr();
  EXPECT_TRUE(contains(log, kj::str("re-attached job id=local-job executor=local pid=", localPid)))
      << log.cStr();
  EXPECT_TRUE(
      contains(log, kj::str("re-attached job id=cgroup-job executor=cgroup pid=", cgroupPid)))
      << log.cStr();
  EXPECT_TRUE(contains(log, "job kept id=ended-job ended exit=3")) << log.cStr();
  EXPECT_FALSE(contains(log, "job lost")) << log.cStr();

  // The same process, still the jobs' parent.
  EXPECT_EQ(kill(supervisor.pid, 0), 0);
  EXPECT_EQ(parentOf(localPid), supervisor.pid);
  EXPECT_EQ(parentOf(cgroupPid), supervisor.pid);
  EXPECT_EQ(KJ_ASSERT_NONNULL(executors::processStartTime(localPid)), localStart);

  // runnerd connects again and takes its jobs back: signals and waits work.
  Connection connection(*io, supervisor.socket);
  pid_t pid;
  auto local = connection.adopt("local", "local-job", pid);
  EXPECT_EQ(pid, localPid);
  connection.signal(local, SIGTERM);
  auto end = connection.end(local);
  EXPECT_FALSE(end.signaled);
  EXPECT_EQ(end.exitCode, 7);
  EXPECT_EQ(fileText(output("local-job")), "before\nterm\n");

  auto cgroup = connection.adopt("cgroup", "cgroup-job", pid);
  EXPECT_EQ(pid, cgroupPid);
  connection.signal(cgroup, SIGTERM);
  EXPECT_EQ(connection.end(cgroup).exitCode, 7);
  EXPECT_EQ(fileText(output("cgroup-job")), "before\nterm\n");
  EXPECT_TRUE(eventually([&]() { return supervisor.cgroupsOf("cgroup-job").size() == 0; }));

  // A job that ended across the re-exec reports its true end.
  auto ending = connection.adopt("local", "ending-job", pid);
  EXPECT_EQ(pid, endingPid);
  EXPECT_EQ(connection.end(ending).exitCode, 5);
  EXPECT_EQ(fileText(output("ending-job")), "done\n");

  // An ended job nobody acknowledged is still held, with its end.
  auto listed = connection.list("local");
  bool found = false;
  for (auto& job : listed) {
    if (job.id == "ended-job") {
      found = true;
      EXPECT_TRUE(job.ended);
      EXPECT_EQ(job.exitCode, 3);
      EXPECT_EQ(job.pid, endedPid);
    }
  }
  EXPECT_TRUE(found);
  auto ended = connection.adopt("local", "ended-job", pid);
  EXPECT_EQ(connection.end(ended).exitCode, 3);

  for (auto job : {&local, &ending, &ended}) connection.acknowledge(*job);
  connection.acknowledge(cgroup);
  EXPECT_EQ(connection.list("local").size(), 0u);
  EXPECT_EQ(connection.list("cgroup").size(), 0u);
  auto held = kj::str(supervisor.stateDir, "/supervisor/held");
  EXPECT_TRUE(eventually([&]() {
    auto fs = kj::newDiskFilesystem();
    // Spare files (".spare-N") are not records.
    for (auto& name : fs->getRoot().openSubdir(kj::Path::parse(held.slice(1)))->listNames()) {
      if (!name.startsWith(".")) return false;
    }
    return true;
  }));
}

TEST_F(SupervisorLifecycle, AReexecThatCannotStartKeepsServing) {
  SupervisorProcess supervisor;
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  auto output = kj::str(supervisor.root, "/out");
  JobSpec spec;
  spec.id = "survivor";
  spec.argv = shell("sleep 1000");
  pid_t pid;
  auto job = connection.launch(kj::mv(spec), output, pid);

  KJ_SYSCALL(chmod(supervisor.binary.cStr(), 0644));
  KJ_SYSCALL(kill(supervisor.pid, SIGHUP));
  supervisor.waitForLog("re-exec failed: ");
  EXPECT_TRUE(contains(supervisor.recentLog(), "; still serving")) << supervisor.recentLog().cStr();
  // Nothing was dropped: the same connection, the same job, and launches are taken again.
  auto listed = connection.list("local");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].ended);
  JobSpec another;
  another.id = "after-failed-reexec";
  another.argv = kj::arr(kj::str("/bin/true"));
  auto second = connection.launch(kj::mv(another), output, pid);
  EXPECT_EQ(connection.end(second).exitCode, 0);

  // Once the binary can start, the re-exec happens.
  KJ_SYSCALL(chmod(supervisor.binary.cStr(), 0755));
  KJ_SYSCALL(kill(supervisor.pid, SIGHUP));
  supervisor.waitForLog("re-exec'd, serving");
  Connection again(*io, supervisor.socket);
  auto adopted = again.adopt("local", "survivor", pid);
  again.signal(adopted, SIGKILL);
  auto end = again.end(adopted);
  EXPECT_TRUE(end.signaled);
  EXPECT_EQ(end.termSignal, SIGKILL);
}

// The supervisor keeps its pid file, socket and records in the state directory: a user who could
// rename what is there could have root signal, chmod or chown what it chose.
TEST_F(SupervisorLifecycle, AStateDirectoryAnotherUserCouldChangeIsRefused) {
  SupervisorProcess supervisor;
  auto state = kj::str(supervisor.root, "/state");
  KJ_SYSCALL(mkdir(state.cStr(), 0711));
  KJ_SYSCALL(chown(state.cStr(), 65534, 65534));
  auto err = kj::str(supervisor.root, "/refused.err");
  auto command = kj::str(supervisor.binary, " --state-dir=", state, " --runnerd-user=root 2>", err);
  int status = system(command.cStr());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_EQ(fileText(err),
            std::string("runner-supervisor: --state-dir ") + state.cStr() +
                " must be root's and writable by root alone (it is owned by uid 65534, group "
                "65534, mode 0711): the supervisor keeps its pid file, socket and job records "
                "there. A runnerd started as root makes its state directory so\n");
  struct stat st;
  EXPECT_NE(lstat(kj::str(state, "/supervisor.pid").cStr(), &st), 0) << "it wrote a pid file";

  // Root's but writable by its group, or below a directory others may write: refused too.
  KJ_SYSCALL(chown(state.cStr(), 0, 65534));
  KJ_SYSCALL(chmod(state.cStr(), 0771));
  EXPECT_NE(system(command.cStr()), 0);
  EXPECT_TRUE(contains(readFile(err), "mode 0771")) << fileText(err);
  KJ_SYSCALL(chmod(state.cStr(), 0711));
  KJ_SYSCALL(chmod(supervisor.root.cStr(), 0777));
  EXPECT_NE(system(command.cStr()), 0);
  EXPECT_TRUE(contains(readFile(err), kj::str(" is below ", supervisor.root, ", which must be")))
      << fileText(err);
  KJ_SYSCALL(chmod(supervisor.root.cStr(), 0755));
  // A pid file someone else made is refused as well.
  KJ_SYSCALL(chown(state.cStr(), 0, 0));
  auto pid = kj::str(state, "/supervisor.pid");
  int fd = open(pid.cStr(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  close(fd);
  KJ_SYSCALL(chown(pid.cStr(), 65534, 65534));
  EXPECT_NE(system(command.cStr()), 0);
  EXPECT_TRUE(contains(readFile(err), "supervisor.pid is not a file of root's; remove it"))
      << fileText(err);
}

TEST_F(SupervisorLifecycle, PastItsHeldJobsLimitLaunchesAreRefusedUntilAnEndIsAcknowledged) {
  kj::StringPtr flags[] = {"--max-held-jobs=2"};
  SupervisorProcess supervisor(flags);
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  auto output = kj::str(supervisor.root, "/out");
  auto mark = marker();
  pid_t pid;
  JobSpec running;
  running.id = "held-running";
  running.argv = kj::arr(kj::str("sleep"), kj::str(mark));
  auto runningJob = connection.launch(kj::mv(running), output, pid);
  JobSpec ended;
  ended.id = "held-ended";
  ended.argv = kj::arr(kj::str("/bin/true"));
  auto endedJob = connection.launch(kj::mv(ended), output, pid);
  EXPECT_EQ(connection.end(endedJob).exitCode, 0);

  // An ended job is held until runnerd has taken its end: two are as many as it may hold.
  JobSpec third;
  third.id = "held-third";
  third.argv = kj::arr(kj::str("/bin/true"));
  wire::Job::Client job = nullptr;
  KJ_IF_MAYBE (e, connection.tryLaunch(kj::mv(third), output, job, pid)) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::OVERLOADED);
    // runnerd passes it on to its client as it is, a limit.
    EXPECT_EQ(e->getDescription(),
              "remote exception: limit: launch refused: the supervisor holds 2 jobs, as many as "
              "it may, until their ends are acknowledged");
  } else {
    ADD_FAILURE() << "a third job was held past --max-held-jobs=2";
  }
  supervisor.waitForLog("launch refused id=held-third: the supervisor holds 2 jobs");
  EXPECT_EQ(connection.list("local").size(), 2u);

  connection.acknowledge(endedJob);
  JobSpec again;
  again.id = "held-third";
  again.argv = kj::arr(kj::str("/bin/true"));
  job = connection.launch(kj::mv(again), output, pid);
  EXPECT_EQ(connection.end(job).exitCode, 0);
  connection.signal(runningJob, SIGKILL);
  EXPECT_EQ(connection.end(runningJob).termSignal, SIGKILL);
}

TEST_F(SupervisorLifecycle, ALaunchWhoseRecordTheDiskDoesNotTakeIsRefusedAtTheDeadline) {
  testing::LoopDisk disk;
  KJ_IF_MAYBE (reason, disk.failure) {
    GTEST_SKIP() << reason->cStr();
  }
  rmdir(kj::str(disk.mountPoint, "/lost+found").cStr());
  SupervisorProcess supervisor;
  // The supervisor's state directory, records and all, on the disk that will freeze.
  supervisor.setStateDir(disk.mountPoint);
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  connection.deadline = 3 * DEADLINE;
  auto output = kj::str(supervisor.root, "/out");
  auto mark = marker();
  pid_t pid;
  JobSpec before;
  before.id = "before-freeze";
  before.argv = kj::arr(kj::str("/bin/true"));
  auto beforeJob = connection.launch(kj::mv(before), output, pid);
  EXPECT_EQ(connection.end(beforeJob).exitCode, 0);

  disk.freeze();
  auto& clock = kj::systemPreciseMonotonicClock();
  auto begin = clock.now();
  EXPECT_EQ(connection.list("local").size(), 1u);
  EXPECT_LT(clock.now() - begin, kj::SECONDS) << "list waited on the frozen disk";

  // Three at once: two hold both launcher threads on the frozen disk, the third waits for one.
  auto frozenSpec = [&](kj::StringPtr id) {
    JobSpec spec;
    spec.id = id;  // a literal
    spec.argv = kj::arr(kj::str("sleep"), kj::str(mark));
    return spec;
  };
  begin = clock.now();
  auto first = connection.sendLaunch(frozenSpec("frozen"), output);
  auto second = connection.sendLaunch(frozenSpec("frozen-too"), output);
  auto third = connection.sendLaunch(frozenSpec("queued"), output);
  auto refusal = [&](auto& promise) -> std::string {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { connection.wait(kj::mv(promise)); })) {
      return e->getDescription().cStr();
    }
    return "a job was launched with no record of it";
  };
  auto diskLine =
      "remote exception: unavailable: launch refused: the supervisor's state directory is not "
      "answering";
  EXPECT_EQ(refusal(first), diskLine);
  EXPECT_EQ(refusal(second), diskLine);
  EXPECT_EQ(refusal(third),
            "remote exception: unavailable: launch refused: the supervisor could not begin the "
            "launch within 10s: its launcher threads are held (by starting jobs, or by a disk "
            "that does not answer)");
  auto waited = clock.now() - begin;
  EXPECT_GE(waited, executor_rpc::ExecutorService::DISK_DEADLINE - 500 * kj::MILLISECONDS);
  EXPECT_LT(waited, executor_rpc::ExecutorService::DISK_DEADLINE + 5 * kj::SECONDS);
  supervisor.waitForLog(
      "launch refused id=frozen: the supervisor's state directory is not answering");
  // Nothing of it ran, and the supervisor still answers at once.
  EXPECT_EQ(processesWith(mark).size(), 0u);
  begin = clock.now();
  EXPECT_EQ(connection.list("local").size(), 1u);
  EXPECT_LT(clock.now() - begin, kj::SECONDS);

  // Thawed: the record written late is removed again, and launches are taken.
  disk.thaw();
  for (auto id : {"frozen", "frozen-too", "queued"}) {
    auto record = kj::str(disk.mountPoint, "/supervisor/held/", id);
    EXPECT_TRUE(eventually([&]() { return access(record.cStr(), F_OK) != 0; }))
        << "the refused launch's record stayed: " << record.cStr();
  }
  JobSpec after;
  after.id = "after-thaw";
  after.argv = kj::arr(kj::str("/bin/true"));
  auto afterJob = connection.launch(kj::mv(after), output, pid);
  EXPECT_EQ(connection.end(afterJob).exitCode, 0);
  EXPECT_EQ(processesWith(mark).size(), 0u);
}

// The --version check before a re-exec catches a binary that cannot start; one that starts and
// then fails is caught by nothing but the next supervisor, which treats it as a crash.
TEST_F(SupervisorLifecycle, AReexecIntoABinaryThatFailsAfterItsVersionCheckLosesNoProcess) {
  SupervisorProcess supervisor;
  supervisor.start();
  auto output = kj::str(supervisor.root, "/out");
  auto mark = marker();
  pid_t pid;
  {
    Connection connection(*io, supervisor.socket);
    JobSpec spec;
    spec.id = "under-broken-upgrade";
    spec.argv = shell(kj::str("sleep ", mark, " & sleep ", mark));
    connection.launch(kj::mv(spec), output, pid);
    ASSERT_TRUE(eventually(
        [&]() { return sleepsWith(mark) == 2 && processesWith(mark).size() == 3; }));
  }
  auto good = kj::str(supervisor.root, "/bin/runner-supervisor.good");
  KJ_SYSCALL(rename(supervisor.binary.cStr(), good.cStr()));
  {
    auto script = kj::str("#!/bin/sh\n[ \"$1\" = --version ] && exec ", good,
                          " --version\necho broken upgrade >&2\nexit 3\n");
    int fd = open(supervisor.binary.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    KJ_ASSERT(fd >= 0, strerror(errno));
    kj::FdOutputStream(kj::AutoCloseFd(fd)).write(script.begin(), script.size());
  }
  KJ_SYSCALL(kill(supervisor.pid, SIGHUP));
  int status = supervisor.waitExit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_TRUE(contains(supervisor.logText(), "broken upgrade")) << supervisor.logText().cStr();

  // The next supervisor (the good binary) kills what is left and reports the job lost.
  KJ_SYSCALL(rename(good.cStr(), supervisor.binary.cStr()));
  supervisor.start();
  EXPECT_TRUE(eventually([&]() { return processesWith(mark).size() == 0; }))
      << processesWith(mark).size();
  Connection connection(*io, supervisor.socket);
  auto listed = connection.list("local");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].ended);
  EXPECT_EQ(listed[0].lost, executor_rpc::ExecutorService::LOST_WITH_SUPERVISOR.cStr());
}

TEST_F(SupervisorLifecycle,
       AfterACrashTheNextSupervisorKillsEverythingOfItsJobsAndReportsThemLost) {
  SupervisorProcess supervisor;
  supervisor.start();
  auto output = kj::str(supervisor.root, "/out");
  auto mark = marker();
  pid_t localPid, cgroupPid, endedPid;
  {
    Connection connection(*io, supervisor.socket);
    // A daemon that leaves the job's session (setsid -f), a background process, and the main one.
    JobSpec local;
    local.id = "crash-local";
    local.argv = shell(kj::str("setsid -f sleep ", mark, "; sleep ", mark, " & sleep ", mark));
    connection.launch(kj::mv(local), output, localPid);
    JobSpec cgroup;
    cgroup.id = "crash-cgroup";
    cgroup.executor = "cgroup";
    cgroup.argv = shell(kj::str("sleep ", mark, " & sleep ", mark));
    cgroup.pids = 64;
    connection.launch(kj::mv(cgroup), output, cgroupPid);
    JobSpec ended;
    ended.id = "crash-ended";
    ended.argv = shell("exit 4");
    auto endedJob = connection.launch(kj::mv(ended), output, endedPid);
    EXPECT_EQ(connection.end(endedJob).exitCode, 4);
    // Its end is told at once and written meanwhile: once written, it survives the crash.
    ASSERT_TRUE(eventually([&]() { return supervisor.recordSaysEnded("crash-ended"); }));
    // Two shells and five sleeps, and nothing on its way to them.
    ASSERT_TRUE(eventually(
        [&]() { return sleepsWith(mark) == 5 && processesWith(mark).size() == 7; }))
        << describeWith(mark).cStr();
  }
  EXPECT_GT(supervisor.cgroupsOf("crash-local").size(), 0u);
  EXPECT_GT(supervisor.cgroupsOf("crash-cgroup").size(), 0u);

  supervisor.crash();
  // The jobs outlived it, daemon and all.
  EXPECT_EQ(processesWith(mark).size(), 7u) << describeWith(mark).cStr();
  EXPECT_EQ(sleepsWith(mark), 5u) << describeWith(mark).cStr();

  supervisor.start();
  auto log = supervisor.recentLog();
  EXPECT_TRUE(contains(log, kj::str("job lost id=crash-local executor=local pid=", localPid)))
      << log.cStr();
  EXPECT_TRUE(contains(log, kj::str("job lost id=crash-cgroup executor=cgroup pid=", cgroupPid)))
      << log.cStr();
  EXPECT_TRUE(contains(log, "job kept id=crash-ended ended exit=4")) << log.cStr();
  // Nothing of the jobs is left: no process, no cgroup.
  EXPECT_TRUE(eventually([&]() { return processesWith(mark).size() == 0; }))
      << processesWith(mark).size();
  EXPECT_TRUE(eventually([&]() {
    return supervisor.cgroupsOf("crash-local").size() == 0 &&
           supervisor.cgroupsOf("crash-cgroup").size() == 0;
  }));

  // runnerd finds them ended, lost, with the reason, and acknowledges them.
  Connection connection(*io, supervisor.socket);
  auto listed = connection.list("local");
  ASSERT_EQ(listed.size(), 2u);
  for (auto& job : listed) {
    EXPECT_TRUE(job.ended) << job.id;
    if (job.id == "crash-local") {
      EXPECT_EQ(job.lost, executor_rpc::ExecutorService::LOST_WITH_SUPERVISOR.cStr());
      EXPECT_EQ(job.pid, localPid);
    } else {
      EXPECT_EQ(job.id, "crash-ended");
      EXPECT_EQ(job.lost, "");
      EXPECT_EQ(job.exitCode, 4);
    }
  }
  pid_t pid;
  auto lost = connection.adopt("cgroup", "crash-cgroup", pid);
  EXPECT_EQ(pid, cgroupPid);
  EXPECT_EQ(connection.end(lost).lost, executor_rpc::ExecutorService::LOST_WITH_SUPERVISOR.cStr());
  connection.acknowledge(lost);
  for (auto id : {"crash-local", "crash-ended"}) {
    auto job = connection.adopt("local", id, pid);
    connection.acknowledge(job);
  }

  // Acknowledged, they are gone for good: a third supervisor holds nothing.
  supervisor.crash();
  supervisor.start();
  EXPECT_TRUE(contains(supervisor.recentLog(), "; 0 jobs held")) << supervisor.recentLog().cStr();
}

TEST_F(SupervisorLifecycle, SigtermGivesRunningJobsTheirGraceThenExits) {
  kj::StringPtr flags[] = {"--grace=2"};
  SupervisorProcess supervisor(flags);
  supervisor.start();
  auto output = [&](kj::StringPtr id) { return kj::str(supervisor.root, "/", id, ".out"); };
  {
    Connection connection(*io, supervisor.socket);
    JobSpec polite;
    polite.id = "polite";
    polite.argv = shell(
        "trap 'echo got TERM; exit 9' TERM; echo ready; "
        "while :; do sleep 0.05; done 2>/dev/null");
    pid_t pid;
    connection.launch(kj::mv(polite), output("polite"), pid);
    JobSpec stubborn;
    stubborn.id = "stubborn";
    stubborn.argv = shell("trap '' TERM; echo ready; while :; do sleep 0.05; done 2>/dev/null");
    connection.launch(kj::mv(stubborn), output("stubborn"), pid);
    ASSERT_TRUE(eventually([&]() {
      return readFile(output("polite")) == "ready\n" && readFile(output("stubborn")) == "ready\n";
    }));
  }
  struct timespec before, after;
  clock_gettime(CLOCK_MONOTONIC, &before);
  KJ_SYSCALL(kill(supervisor.pid, SIGTERM));
  int status = supervisor.waitExit(10);
  clock_gettime(CLOCK_MONOTONIC, &after);
  ASSERT_NE(status, -1) << "the supervisor did not exit within 10 s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  double seconds = (after.tv_sec - before.tv_sec) + (after.tv_nsec - before.tv_nsec) / 1e9;
  // The stubborn job had its two seconds, then SIGKILL.
  EXPECT_GE(seconds, 1.9);
  EXPECT_EQ(fileText(output("polite")), "ready\ngot TERM\n");
  auto log = supervisor.recentLog();
  EXPECT_TRUE(contains(log, "job ended id=polite exit=9")) << log.cStr();
  EXPECT_TRUE(contains(log, "job ended id=stubborn signal=9")) << log.cStr();
  EXPECT_TRUE(contains(log, "runner-supervisor stopped")) << log.cStr();

  // Their ends are kept for runnerd, until acknowledged.
  supervisor.start();
  Connection connection(*io, supervisor.socket);
  auto listed = connection.list("local");
  ASSERT_EQ(listed.size(), 2u);
  for (auto& job : listed) {
    EXPECT_TRUE(job.ended);
    EXPECT_EQ(job.lost, "");
  }
}

}  // namespace
}  // namespace runner

// runnerd with its jobs run by runner-supervisor: both as real processes, the supervisor on a
// Unix socket, runnerd using it through --executor-socket, runctl as a user would.

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "certs/credential-files.h"
#include "executor-rpc/remote-executor.h"
#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::RunnerdFixture;

kj::String supervisorPath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test through bazel");
  return kj::str(srcdir, "/runner/runner/runner-supervisor");
}

// A runner-supervisor of the test's own, on a fresh state directory; SIGTERM at the end.
class SupervisorProcess {
 public:
  // `extra`: flags beyond the state directory, runnerd's user and the uid range.
  explicit SupervisorProcess(kj::ArrayPtr<const kj::StringPtr> extra = nullptr)
      : extra(KJ_MAP(flag, extra) { return kj::str(flag); }) {
    mkdir("/var/lib/runner-tests", 0755);
    auto tmpl = kj::str("/var/lib/runner-tests/supervisor-test.XXXXXX");
    KJ_ASSERT(mkdtemp(tmpl.begin()) != nullptr, strerror(errno));
    KJ_SYSCALL(chmod(tmpl.cStr(), 0755));
    root = kj::mv(tmpl);
    socket = kj::str(root, "/state/supervisor/executor.sock");
    start();
  }

  ~SupervisorProcess() noexcept(false) {
    if (pid != 0) stop();
    auto fs = kj::newDiskFilesystem();
    auto path = kj::Path::parse(root.slice(1));
    fs->getRoot().openSubdir(path.parent(), kj::WriteMode::MODIFY)->remove(path.basename());
  }

  void start() {
    auto binary = supervisorPath();
    auto stateFlag = kj::str("--state-dir=", root, "/state");
    // runnerd runs as root here, and gives its owners uids from the fixtures' ranges.
    char userFlag[] = "--runnerd-user=runner";
    char uidsFlag[] = "--uid-range=2001000000-2140999999";
    kj::Vector<char*> argv;
    argv.addAll(std::initializer_list<char*>{binary.begin(), stateFlag.begin(), userFlag,
                                             uidsFlag});
    for (auto& flag : extra) argv.add(flag.begin());
    argv.add(nullptr);
    auto logPath = log();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, logPath.cStr(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    int error = posix_spawn(&pid, binary.cStr(), &actions, nullptr, argv.begin(), environ);
    posix_spawn_file_actions_destroy(&actions);
    KJ_ASSERT(error == 0, "cannot start runner-supervisor", strerror(error));
    waitForLog("runner-supervisor serving");
  }

  // SIGTERM, and waits for it to stop its jobs and exit (30 s at most, then SIGKILL).
  void stop() {
    kill(pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = 0;
        return;
      }
      usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = 0;
    KJ_FAIL_ASSERT("runner-supervisor did not exit within 30 s of SIGTERM", logText());
  }

  kj::String log() const { return kj::str(root, "/supervisor.stderr"); }
  kj::String logText() const {
    struct stat st;
    if (stat(log().cStr(), &st) < 0) return kj::str();
    return certs::readFile(log());
  }

  void waitForLog(kj::StringPtr text) const {
    for (int i = 0; i < 1000; i++) {
      if (strstr(logText().cStr(), text.cStr()) != nullptr) return;
      usleep(10000);
    }
    KJ_FAIL_ASSERT("runner-supervisor did not log this within 10 s", text, logText());
  }

  kj::Array<kj::String> extra;
  kj::String root;
  kj::String socket;
  pid_t pid = 0;
};

class SupervisorEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
      GTEST_SKIP() << reason->cStr();
    }
    supervisor = std::make_unique<SupervisorProcess>();
    auto local = kj::str("--executor-socket=local=", supervisor->socket);
    auto cgroup = kj::str("--executor-socket=cgroup=", supervisor->socket);
    // runnerd shares the supervisor's state directory: it finds this supervisor running there
    // (and starts none of its own), and the homes the supervisor makes are where runnerd's
    // owners' homes are.
    auto state = kj::str("--state-dir=", supervisor->root, "/state");
    kj::StringPtr flags[] = {local, cgroup, state};
    server = std::make_unique<RunnerdFixture>(flags);
  }

  void TearDown() override {
    server = nullptr;
    supervisor = nullptr;
  }

  testing::RunctlResult runctl(kj::ArrayPtr<const kj::StringPtr> args) {
    return testing::runctl(*server, args);
  }

  // The value of `"key": ` in runctl's JSON, up to the next comma or brace.
  static std::string jsonField(const std::string& json, const std::string& key) {
    auto at = json.find("\"" + key + "\":");
    if (at == std::string::npos) return "";
    at += key.size() + 3;
    while (json[at] == ' ') at++;
    auto end = json.find_first_of(",}\n", at);
    return json.substr(at, end - at);
  }

  // std::unique_ptr: gtest's fixture destructor is noexcept, kj::Own's is not.
  std::unique_ptr<SupervisorProcess> supervisor;
  std::unique_ptr<RunnerdFixture> server;
};

TEST_F(SupervisorEndToEnd, JobRunsUnderTheSupervisorWithItsOutputByteForByte) {
  // The job's parent is the supervisor, not runnerd; its output, NUL and 0xff included, arrives
  // unchanged; its exit code is the job's.
  auto result = runctl(
      {"run", "--", "/bin/sh", "-c", "printf '%s\\n' \"$PPID\"; printf 'a\\000b\\377c'; exit 3"});
  EXPECT_EQ(result.status, 3) << result.err;
  auto expected = std::to_string(supervisor->pid) + "\n" + std::string("a\0b\377c", 5);
  EXPECT_EQ(result.out, expected);
  EXPECT_NE(strstr(supervisor->logText().cStr(), "job started id="), nullptr);
  EXPECT_NE(strstr(server->serverLog().cStr(), "runs its jobs through"), nullptr);
}

TEST_F(SupervisorEndToEnd, SignalEndIsExact) {
  auto result = runctl({"run", "--", "/bin/sh", "-c", "kill -USR1 $$"});
  EXPECT_EQ(result.status, 128 + SIGUSR1) << result.err;
}

TEST_F(SupervisorEndToEnd, StopReachesTheJobThroughTheSupervisor) {
  auto started = runctl({"start", "--", "/bin/sleep", "100"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = started.out.substr(0, started.out.find('\n'));
  auto stopped = runctl({"stop", "--grace", "5s", id.c_str()});
  EXPECT_EQ(stopped.status, 0) << stopped.err;
  auto status = runctl({"status", "--json", id.c_str()});
  EXPECT_EQ(jsonField(status.out, "state"), "\"stopped\"") << status.out;
  EXPECT_EQ(jsonField(status.out, "termSignal"), "15") << status.out;
  supervisor->waitForLog(kj::str("job ended id=", id.c_str(), " signal=15"));
  // runnerd recorded the end and said so: the supervisor no longer holds the job.
  supervisor->waitForLog(kj::str("job acknowledged id=", id.c_str()));
}

TEST_F(SupervisorEndToEnd, CgroupExecutorThroughTheSupervisor) {
  auto result = runctl(
      {"run", "--executor", "cgroup", "--pids", "64", "--", "/bin/cat", "/proc/self/cgroup"});
  EXPECT_EQ(result.status, 0) << result.err;
  // The job is in a cgroup named after it, made by the supervisor.
  auto log = supervisor->logText();
  auto at = strstr(log.cStr(), "job started id=");
  ASSERT_NE(at, nullptr);
  std::string id(at + strlen("job started id="), 36);
  EXPECT_NE(result.out.find(id), std::string::npos) << result.out;
  EXPECT_NE(strstr(log.cStr(), "executor=cgroup"), nullptr) << log.cStr();
}

TEST_F(SupervisorEndToEnd, PeerWithAnotherUidIsRefused) {
  // A process in runnerd's group (runner's) but with another uid passes the directory's and the
  // socket's permissions; the supervisor's SO_PEERCRED check refuses it.
  struct passwd* runner = getpwnam("runner");
  ASSERT_NE(runner, nullptr);
  gid_t runnerGid = runner->pw_gid;
  int pipeFds[2];
  KJ_SYSCALL(pipe(pipeFds));
  pid_t child = fork();
  KJ_ASSERT(child >= 0);
  if (child == 0) {
    KJ_DEFER(_exit(99));
    close(pipeFds[0]);
    gid_t groups[] = {runnerGid};
    if (setgroups(1, groups) < 0 || setgid(runnerGid) < 0 || setuid(65534) < 0) _exit(2);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, supervisor->socket.cStr(), sizeof(address.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) _exit(3);
    char byte;
    // The supervisor closes the connection without a word.
    ssize_t n = read(fd, &byte, 1);
    _exit(n == 0 ? 0 : 4);
  }
  close(pipeFds[0]);
  close(pipeFds[1]);
  int status;
  KJ_SYSCALL(waitpid(child, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: setuid failed, 3: connect failed, 4: not closed";
  supervisor->waitForLog("refused a connection from uid 65534");
}

TEST_F(SupervisorEndToEnd, LaunchAsRootIsRefused) {
  auto& io = server->io;
  // Connected as runnerd's user, as runnerd would be (SO_PEERCRED reads the effective ids).
  struct passwd* runner = getpwnam("runner");
  ASSERT_NE(runner, nullptr);
  ASSERT_EQ(setegid(runner->pw_gid), 0);
  ASSERT_EQ(seteuid(runner->pw_uid), 0);
  kj::Vector<kj::String> lines;
  executor_rpc::ExecutorConnection connection(
      *io.lowLevelProvider, io.provider->getTimer(), supervisor->socket,
      [&](kj::StringPtr line) { lines.add(kj::str(line)); });
  ASSERT_EQ(seteuid(0), 0);
  ASSERT_EQ(setegid(0), 0);
  auto local = connection.executor("local").wait(io.waitScope);
  int devNull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  KJ_DEFER(close(devNull));
  executors::LaunchRequest request;
  request.jobId = kj::str("root-job");
  request.argv = kj::arr(kj::str("/bin/true"));
  request.workingDir = kj::str("/");
  request.outputFd = devNull;
  request.credentials.uid = 0;
  request.credentials.gid = 0;
  auto failure =
      kj::runCatchingExceptions([&]() { local->launch(kj::mv(request)).wait(io.waitScope); });
  KJ_IF_MAYBE (e, failure) {
    EXPECT_NE(strstr(e->getDescription().cStr(), "a job may not run as root"), nullptr)
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a launch as root was accepted";
  }
  supervisor->waitForLog("launch refused id=root-job: a job may not run as root");

  // And a job id that is not a plain name (it would name a cgroup) is refused the same way.
  executors::LaunchRequest sneaky;
  sneaky.jobId = kj::str("../../escape");
  sneaky.argv = kj::arr(kj::str("/bin/true"));
  sneaky.workingDir = kj::str("/");
  sneaky.outputFd = devNull;
  sneaky.credentials.uid = 65534;
  sneaky.credentials.gid = 65534;
  EXPECT_NE(kj::runCatchingExceptions([&]() { local->launch(kj::mv(sneaky)).wait(io.waitScope); }),
            nullptr);
}

TEST_F(SupervisorEndToEnd, SupervisorDownFailsStartsButStatusAndListAnswer) {
  auto started = runctl({"start", "--", "/bin/true"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = started.out.substr(0, started.out.find('\n'));
  supervisor->stop();
  server->waitForLog("closed the connection");
  auto refused = runctl({"start", "--", "/bin/true"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("is not answering"), std::string::npos) << refused.err;
  // No path of the server's reaches the client.
  EXPECT_EQ(refused.err.find(".sock"), std::string::npos) << refused.err;
  EXPECT_EQ(runctl({"status", id.c_str()}).status, 0);
  EXPECT_EQ(runctl({"list"}).status, 0);
  EXPECT_EQ(runctl({"logs", id.c_str()}).status, 0);
}

// What a crash of runnerd does to the supervisor's jobs (they are taken back) is tested in
// tests/supervision-test.c++.

TEST(TwoExecutorSockets, OneRunnerdStartsJobsOnTheExecutorsOfTwoSupervisors) {
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
    GTEST_SKIP() << reason->cStr();
  }
  // The first supervisor serves this host's executors (local, cgroup) in runnerd's state
  // directory; a second one, of its own, serves its local executor under the name "remote",
  // with the first's homes (where runnerd's owners' homes are) and cgroups of its own.
  auto first = std::make_unique<SupervisorProcess>();
  auto homes = kj::str("--homes=", first->root, "/state/homes");
  auto parentName = kj::str("runner-two-sockets-", getpid());
  KJ_DEFER(system(kj::str("for d in /sys/fs/cgroup/*/", parentName, "; do [ -d $d ] && find $d "
                          "-depth -type d -exec rmdir {} + 2>/dev/null; done; true")
                      .cStr()));
  auto parent = kj::str("--cgroup-parent=", parentName);
  kj::StringPtr secondFlags[] = {"--executor=remote=local", homes, parent};
  auto second = std::make_unique<SupervisorProcess>(secondFlags);
  second->waitForLog("serving remote on");

  auto state = kj::str("--state-dir=", first->root, "/state");
  auto remote = kj::str("--executor-socket=remote=", second->socket);
  kj::StringPtr flags[] = {state, remote};
  auto server = std::make_unique<RunnerdFixture>(flags);
  EXPECT_NE(strstr(server->serverLog().cStr(), "executor remote runs its jobs through"), nullptr)
      << server->serverLog().cStr();

  // Each job's parent is the supervisor serving the executor it named, and each end is exact.
  kj::StringPtr onRemote[] = {"run", "--executor", "remote", "--", "/bin/sh", "-c",
                              "echo $PPID; exit 4"};
  auto ranRemote = testing::runctl(*server, onRemote);
  EXPECT_EQ(ranRemote.status, 4) << ranRemote.err;
  EXPECT_EQ(ranRemote.out, std::to_string(second->pid) + "\n");
  kj::StringPtr onLocal[] = {"run", "--executor", "local", "--", "/bin/sh", "-c",
                             "echo $PPID; exit 5"};
  auto ranLocal = testing::runctl(*server, onLocal);
  EXPECT_EQ(ranLocal.status, 5) << ranLocal.err;
  EXPECT_EQ(ranLocal.out, std::to_string(first->pid) + "\n");
  EXPECT_NE(strstr(second->logText().cStr(), "executor=remote"), nullptr)
      << second->logText().cStr();

  // An executor neither serves is refused by runnerd with one line; the second supervisor
  // refuses a name it does not serve, and logs it.
  kj::StringPtr unknown[] = {"run", "--executor", "nowhere", "--", "/bin/true"};
  auto refused = testing::runctl(*server, unknown);
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.err.find("nowhere"), std::string::npos) << refused.err;

  // A job of the second supervisor outlives runnerd and is taken back by the next one.
  kj::StringPtr longRemote[] = {"start", "--executor", "remote", "--", "/bin/sleep", "100"};
  auto started = testing::runctl(*server, longRemote);
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = started.out.substr(0, started.out.find('\n'));
  server->stop();
  server->start();
  kj::StringPtr status[] = {"status", "--json", id.c_str()};
  auto afterRestart = testing::runctl(*server, status);
  EXPECT_NE(afterRestart.out.find("\"state\":\"running\""), std::string::npos)
      << afterRestart.out << afterRestart.err;
  kj::StringPtr stop[] = {"stop", "--grace", "5s", id.c_str()};
  EXPECT_EQ(testing::runctl(*server, stop).status, 0);
  second->waitForLog(kj::str("job acknowledged id=", id.c_str()));

  server = nullptr;
  second = nullptr;
  first = nullptr;
}

}  // namespace
}  // namespace runner

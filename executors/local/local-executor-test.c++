#include "executors/local/local-executor.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/syscall.h>

#include <algorithm>
#include <string>
#include <vector>

#include "executors/spawn.h"

namespace runner::executors {
namespace {

// An unlinked temporary file that a job writes its output to.
class OutputFile {
 public:
  OutputFile() {
    mkdir("/var/lib/runner-tests", 0755);
    char path[] = "/var/lib/runner-tests/local-executor-test-XXXXXX";
    int fd;
    KJ_SYSCALL(fd = mkostemp(path, O_CLOEXEC));
    file = kj::AutoCloseFd(fd);
    KJ_SYSCALL(unlink(path));
  }

  int get() const { return file.get(); }

  std::string read() const {
    std::string content;
    char buffer[4096];
    for (off_t offset = 0;;) {
      ssize_t n;
      KJ_SYSCALL(n = pread(file.get(), buffer, sizeof(buffer), offset));
      if (n == 0) return content;
      content.append(buffer, n);
      offset += n;
    }
  }

 private:
  kj::AutoCloseFd file;
};

// A temporary directory that the job user may enter, removed (with what a test put in it)
// at the end.
class TempDir {
 public:
  TempDir() {
    mkdir("/var/lib/runner-tests", 0755);
    char pattern[] = "/var/lib/runner-tests/local-executor-test-XXXXXX";
    KJ_ASSERT(mkdtemp(pattern) != nullptr, strerror(errno));
    path = pattern;
    KJ_SYSCALL(chmod(path.c_str(), 0755));
  }
  ~TempDir() {
    std::string command = "rm -rf '" + path + "'";
    int status KJ_UNUSED = system(command.c_str());
  }

  std::string path;
};

std::string text(kj::StringPtr string) {
  return std::string(string.cStr(), string.size());
}

std::string readLink(const std::string& path) {
  char buffer[256];
  ssize_t n;
  KJ_SYSCALL(n = readlink(path.c_str(), buffer, sizeof(buffer)), path);
  return std::string(buffer, n);
}

// The state letter of /proc/PID/stat, or 0 when the process is gone.
char processState(pid_t pid) {
  FILE* file = fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (file == nullptr) return 0;
  char line[1024];
  char* read = fgets(line, sizeof(line), file);
  fclose(file);
  if (read == nullptr) return 0;
  const char* afterComm = strrchr(line, ')');
  return afterComm == nullptr ? 0 : afterComm[2];
}

// Whether `pid` ended (gone or a zombie) within a few seconds: SIGKILL takes effect when the
// target is next scheduled, not when kill() returns.
bool endsSoon(pid_t pid) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    char state = processState(pid);
    if (state == 0 || state == 'Z') return true;
    usleep(10 * 1000);
  }
  return false;
}

// The processes this thread has created and not reaped yet.
// The children of every thread of this process: jobs are created by launcher threads.
std::vector<pid_t> childrenOfThisProcess() {
  std::vector<pid_t> children;
  DIR* tasks = opendir("/proc/self/task");
  KJ_ASSERT(tasks != nullptr, strerror(errno));
  while (struct dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::string path = std::string("/proc/self/task/") + entry->d_name + "/children";
    FILE* file = fopen(path.c_str(), "r");
    if (file == nullptr) continue;  // a thread that just ended
    int pid;
    while (fscanf(file, "%d", &pid) == 1) children.push_back(pid);
    fclose(file);
  }
  closedir(tasks);
  return children;
}

// Waits up to 2 s for the launch in flight to have created its child, and returns the
// children then.
std::vector<pid_t> childrenOnceLaunched() {
  for (int attempt = 0; attempt < 2000; ++attempt) {
    auto children = childrenOfThisProcess();
    if (!children.empty()) return children;
    usleep(1000);
  }
  return {};
}

// How long, in wall-clock milliseconds, the event loop takes to fire a timer of `delay`.
int64_t millisToWaitFor(kj::AsyncIoContext& io, kj::Duration delay) {
  struct timespec begin, end;
  clock_gettime(CLOCK_MONOTONIC, &begin);
  io.provider->getTimer().afterDelay(delay).wait(io.waitScope);
  clock_gettime(CLOCK_MONOTONIC, &end);
  return (end.tv_sec - begin.tv_sec) * 1000 + (end.tv_nsec - begin.tv_nsec) / 1000000;
}

// Open descriptors of this process.
size_t openDescriptors() {
  size_t count = 0;
  DIR* dir = opendir("/proc/self/fd");
  KJ_ASSERT(dir != nullptr, strerror(errno));
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count;
}

// Holds whoever execs `path` inside execve(), before the new program starts: a write lease
// makes the kernel's open of the file for exec wait until the lease is given up (or until
// /proc/sys/fs/lease-break-time has passed, 45 s by default). The lease break is announced to
// this process with SIGIO, which is ignored meanwhile.
class ExecHold {
 public:
  explicit ExecHold(const std::string& path) {
    previousSigio = signal(SIGIO, SIG_IGN);
    KJ_SYSCALL(fd = open(path.c_str(), O_RDONLY | O_CLOEXEC), path.c_str());
    if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0) error = strerror(errno);
  }
  ~ExecHold() {
    release();
    close(fd);
    signal(SIGIO, previousSigio);
  }

  // Empty when the hold is in place, otherwise why not.
  std::string error;

  void release() { fcntl(fd, F_SETLEASE, F_UNLCK); }

 private:
  int fd = -1;
  sighandler_t previousSigio;
};

template <typename Func>
kj::Exception expectThrows(Func&& func) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
    return kj::mv(*exception);
  }
  ADD_FAILURE() << "expected an exception";
  return KJ_EXCEPTION(FAILED, "no exception was thrown");
}

class LocalExecutorTest : public testing::Test {
 protected:
  // KJ's owners may throw from destructors; gtest's fixture destructor may not.
  ~LocalExecutorTest() noexcept override {}

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: jobs switch to the runner-jobs user";
    struct passwd* user = getpwnam("runner-jobs");
    if (user == nullptr) {
      GTEST_SKIP() << "user runner-jobs does not exist; create it with: useradd --system "
                      "--home-dir /nonexistent --shell /usr/sbin/nologin runner-jobs";
    }
    uid = user->pw_uid;
    gid = user->pw_gid;
    int count = 0;
    getgrouplist(user->pw_name, gid, nullptr, &count);
    groups.resize(count);
    KJ_ASSERT(getgrouplist(user->pw_name, gid, groups.data(), &count) >= 0);
    groups.resize(count);
  }

  LaunchRequest request(std::initializer_list<const char*> argv) {
    LaunchRequest result;
    result.jobId = kj::str("test-job");
    result.argv = KJ_MAP(arg, argv) {
      return kj::str(arg);
    };
    result.env = kj::arr(kj::str("PATH=/usr/local/bin:/usr/bin:/bin"), kj::str("HOME=/nonexistent"),
                         kj::str("USER=runner-jobs"), kj::str("LANG=C.UTF-8"));
    result.workingDir = kj::str("/");
    result.outputFd = output.get();
    result.credentials.uid = uid;
    result.credentials.gid = gid;
    result.credentials.supplementaryGroups = kj::heapArray<gid_t>(groups.data(), groups.size());
    result.credentials.userName = kj::str("runner-jobs");
    result.credentials.homeDir = kj::str("/nonexistent");
    return result;
  }

  kj::Own<Process> start(LaunchRequest&& launchRequest) {
    auto result = executor.launch(kj::mv(launchRequest)).wait(io.waitScope);
    if (result.is<LaunchFailure>()) {
      ADD_FAILURE() << "launch failed: " << result.get<LaunchFailure>().message.cStr();
    }
    return kj::mv(result.get<kj::Own<Process>>());
  }

  LaunchFailure startFailing(LaunchRequest&& launchRequest) {
    auto result = executor.launch(kj::mv(launchRequest)).wait(io.waitScope);
    if (!result.is<LaunchFailure>()) ADD_FAILURE() << "launch unexpectedly succeeded";
    return kj::mv(result.get<LaunchFailure>());
  }

  ExitStatus run(LaunchRequest&& launchRequest) {
    return start(kj::mv(launchRequest))->onExit().wait(io.waitScope);
  }

  // Whether the job is still running after `millis`.
  bool stillRunningAfter(Process& process, uint64_t millis) {
    return process.onExit()
        .then([](ExitStatus&&) { return false; })
        .exclusiveJoin(io.provider->getTimer().afterDelay(millis * kj::MILLISECONDS).then([]() {
          return true;
        }))
        .wait(io.waitScope);
  }

  // Waits (on the event loop) until the job's output contains `text`.
  void waitForOutput(const std::string& text) {
    for (int attempt = 0; attempt < 500; ++attempt) {
      if (output.read().find(text) != std::string::npos) return;
      io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
    }
    FAIL() << "the job never wrote " << text << "; output: " << output.read();
  }

  kj::AsyncIoContext io = kj::setupAsyncIo();
  LocalExecutor executor{io.unixEventPort, io.provider->getTimer()};
  OutputFile output;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

TEST_F(LocalExecutorTest, IsNamedLocal) {
  EXPECT_EQ(text(executor.name()), "local");
}

TEST_F(LocalExecutorTest, ExitCodeZero) {
  auto status = run(request({"true"}));
  EXPECT_FALSE(status.signaled);
  EXPECT_EQ(status.exitCode, 0);
}

TEST_F(LocalExecutorTest, ExitCodeThree) {
  auto status = run(request({"sh", "-c", "exit 3"}));
  EXPECT_FALSE(status.signaled);
  EXPECT_EQ(status.exitCode, 3);
}

TEST_F(LocalExecutorTest, DeathBySignalIsReported) {
  auto status = run(request({"sh", "-c", "kill -9 $$"}));
  EXPECT_TRUE(status.signaled);
  EXPECT_EQ(status.termSignal, SIGKILL);
}

TEST_F(LocalExecutorTest, OnExitCanBeCalledMoreThanOnce) {
  auto process = start(request({"sh", "-c", "exit 5"}));
  auto first = process->onExit();
  auto second = process->onExit();
  EXPECT_EQ(first.wait(io.waitScope).exitCode, 5);
  EXPECT_EQ(second.wait(io.waitScope).exitCode, 5);
  EXPECT_EQ(process->onExit().wait(io.waitScope).exitCode, 5);
  // After the exit, signalling is a harmless no-op.
  process->signalAll(SIGTERM);
}

TEST_F(LocalExecutorTest, MissingCommandIsALaunchFailure) {
  auto failure = startFailing(request({"runner-no-such-command"}));
  EXPECT_EQ(failure.errorNumber, ENOENT);
  EXPECT_EQ(text(failure.message), "exec runner-no-such-command: No such file or directory");
}

TEST_F(LocalExecutorTest, MissingWorkingDirectoryIsALaunchFailure) {
  auto launchRequest = request({"true"});
  launchRequest.workingDir = kj::str("/nonexistent-runner-dir");
  auto failure = startFailing(kj::mv(launchRequest));
  EXPECT_EQ(failure.errorNumber, ENOENT);
  EXPECT_EQ(text(failure.message), "chdir /nonexistent-runner-dir: No such file or directory");
}

TEST_F(LocalExecutorTest, WorkingDirectoryIsEnteredAsTheJobUser) {
  TempDir dir;
  KJ_SYSCALL(chmod(dir.path.c_str(), 0700));  // root's, closed to others
  auto launchRequest = request({"true"});
  launchRequest.workingDir = kj::str(dir.path.c_str());
  auto failure = startFailing(kj::mv(launchRequest));
  EXPECT_EQ(failure.errorNumber, EACCES);
  EXPECT_EQ(text(failure.message), "chdir " + dir.path + ": Permission denied");
}

TEST_F(LocalExecutorTest, CommandIsSearchedInTheJobsPath) {
  TempDir dir;
  std::string script = dir.path + "/runner-not-executable";
  int fd;
  KJ_SYSCALL(fd = open(script.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  close(fd);

  auto launchRequest = request({"runner-not-executable"});
  launchRequest.env[0] = kj::str("PATH=/nonexistent-runner-dir:", dir.path.c_str());
  auto failure = startFailing(kj::mv(launchRequest));
  EXPECT_EQ(failure.errorNumber, EACCES);
  EXPECT_EQ(text(failure.message), "exec runner-not-executable: Permission denied");

  launchRequest = request({"true"});
  launchRequest.env[0] = kj::str("PATH=/nonexistent-runner-dir:", dir.path.c_str(), ":/bin");
  EXPECT_EQ(run(kj::mv(launchRequest)).exitCode, 0);
}

TEST_F(LocalExecutorTest, EmptyCommandThrows) {
  auto exception = expectThrows([&]() { executor.launch(request({""})).wait(io.waitScope); });
  EXPECT_TRUE(strstr(exception.getDescription().cStr(), "empty command") != nullptr)
      << exception.getDescription().cStr();

  auto noArgvException = expectThrows([&]() {
    auto noArgv = request({"true"});
    noArgv.argv = nullptr;
    executor.launch(kj::mv(noArgv)).wait(io.waitScope);
  });
  EXPECT_TRUE(strstr(noArgvException.getDescription().cStr(), "empty command") != nullptr)
      << noArgvException.getDescription().cStr();
}

TEST_F(LocalExecutorTest, RootCredentialsAreRefused) {
  auto exception = expectThrows([&]() {
    auto asRoot = request({"true"});
    asRoot.credentials.uid = 0;
    executor.launch(kj::mv(asRoot)).wait(io.waitScope);
  });
  EXPECT_TRUE(strstr(exception.getDescription().cStr(), "refusing to run a job as root"))
      << exception.getDescription().cStr();
}

TEST_F(LocalExecutorTest, LimitsAreUnimplementedAndNamed) {
  auto exception = expectThrows([&]() {
    auto limited = request({"true"});
    limited.limits.memoryBytes = 64 << 20;
    limited.limits.pids = 10;
    executor.launch(kj::mv(limited)).wait(io.waitScope);
  });
  EXPECT_EQ(exception.getType(), kj::Exception::Type::UNIMPLEMENTED);
  auto description = exception.getDescription();
  EXPECT_TRUE(strstr(description.cStr(), "cannot apply limits; use the cgroup executor"))
      << description.cStr();
  EXPECT_TRUE(strstr(description.cStr(), "(limits asked for: memory, pids)")) << description.cStr();
}

TEST_F(LocalExecutorTest, IgnoredTermLeavesTheJobRunningUntilKill) {
  auto process = start(request({"sh", "-c", "trap '' TERM; echo ready; sleep 1000"}));
  waitForOutput("ready");
  process->signalAll(SIGTERM);
  EXPECT_TRUE(stillRunningAfter(*process, 300));

  process->signalAll(SIGKILL);
  auto status = process->onExit().wait(io.waitScope);
  EXPECT_TRUE(status.signaled);
  EXPECT_EQ(status.termSignal, SIGKILL);
}

TEST_F(LocalExecutorTest, LeftoverChildIsKilledWhenTheMainProcessExits) {
  auto status = run(request({"sh", "-c", "sleep 1000 & echo $!; exit 0"}));
  EXPECT_EQ(status.exitCode, 0);
  pid_t leftover = atoi(output.read().c_str());
  ASSERT_GT(leftover, 0) << output.read();
  EXPECT_TRUE(endsSoon(leftover));
}

TEST_F(LocalExecutorTest, DestroyingTheProcessKillsAndReapsTheJob) {
  auto process = start(request({"sleep", "1000"}));
  pid_t pid = process->pid();
  EXPECT_NE(processStartTime(pid), nullptr);
  process = nullptr;
  // Reaped synchronously: the pid is gone at once.
  EXPECT_EQ(processStartTime(pid), nullptr);
}

TEST_F(LocalExecutorTest, RunsAsTheRunAsUser) {
  EXPECT_EQ(run(request({"sh", "-c", "id -u; id -g; id -G"})).exitCode, 0);
  std::string groupList;
  for (gid_t group : groups) {
    groupList += (groupList.empty() ? "" : " ") + std::to_string(group);
  }
  EXPECT_EQ(output.read(),
            std::to_string(uid) + "\n" + std::to_string(gid) + "\n" + groupList + "\n");
}

TEST_F(LocalExecutorTest, EnvironmentIsExactlyTheRequestedOne) {
  setenv("RUNNER_TEST_SERVER_SECRET", "leaked", 1);
  auto launchRequest = request({"env"});
  launchRequest.env = kj::arr(kj::str("PATH=/usr/bin:/bin"), kj::str("GREETING=hello"));
  EXPECT_EQ(run(kj::mv(launchRequest)).exitCode, 0);
  unsetenv("RUNNER_TEST_SERVER_SECRET");
  EXPECT_EQ(output.read(), "PATH=/usr/bin:/bin\nGREETING=hello\n");
}

TEST_F(LocalExecutorTest, UmaskAndDescriptorLimitAreNotTheServers) {
  mode_t previous = umask(077);
  struct rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  struct rlimit raised = limit;
  raised.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &raised);
  auto result = run(request({"sh", "-c", "umask; ulimit -n"}));
  setrlimit(RLIMIT_NOFILE, &limit);
  umask(previous);
  EXPECT_EQ(result.exitCode, 0);
  auto expected = kj::str("0022\n", limit.rlim_max < 1024 ? limit.rlim_max : 1024, "\n");
  EXPECT_EQ(output.read(), expected.cStr());
}

TEST_F(LocalExecutorTest, AnAbsurdlyLongPathIsRefused) {
  auto launchRequest = request({"true"});
  kj::Vector<kj::String> directories;
  for (int i = 0; i < 65; i++) directories.add(kj::str("/nonexistent-", i));
  launchRequest.env = kj::arr(kj::str("PATH=", kj::strArray(directories, ":")));
  auto e = kj::runCatchingExceptions(
      [&]() { executor.launch(kj::mv(launchRequest)).wait(io.waitScope); });
  ASSERT_TRUE(e != nullptr);
  EXPECT_TRUE(strstr(KJ_ASSERT_NONNULL(e).getDescription().cStr(), "PATH has 65 directories") !=
              nullptr)
      << KJ_ASSERT_NONNULL(e).getDescription().cStr();
}

TEST_F(LocalExecutorTest, StdinIsDevNull) {
  EXPECT_EQ(run(request({"cat"})).exitCode, 0);
  EXPECT_EQ(output.read(), "");
  EXPECT_EQ(run(request({"readlink", "/proc/self/fd/0"})).exitCode, 0);
  EXPECT_EQ(output.read(), "/dev/null\n");
}

TEST_F(LocalExecutorTest, StdoutAndStderrGoToTheOutputFile) {
  EXPECT_EQ(run(request({"sh", "-c", "echo out; echo err >&2"})).exitCode, 0);
  EXPECT_EQ(output.read(), "out\nerr\n");
}

TEST_F(LocalExecutorTest, NoDescriptorsLeak) {
  // An inheritable descriptor in the server must not reach the job.
  int leaky;
  KJ_SYSCALL(leaky = open("/dev/null", O_RDONLY));
  kj::AutoCloseFd leakyOwner(leaky);
  EXPECT_EQ(run(request({"ls", "/proc/self/fd"})).exitCode, 0);
  // 3 is the directory `ls` itself opened.
  EXPECT_EQ(output.read(), "0\n1\n2\n3\n");
}

TEST_F(LocalExecutorTest, SignalsAreDefaultInTheJob) {
  // KJ ignores SIGPIPE and may block signals in the server; ignored signals and the mask
  // survive exec, so the job must get them reset. `grep` reads its own inherited state.
  EXPECT_EQ(run(request({"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"})).exitCode, 0);
  EXPECT_EQ(output.read(), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST_F(LocalExecutorTest, WorkingDirectoryIsHonoured) {
  TempDir dir;
  auto launchRequest = request({"pwd"});
  launchRequest.workingDir = kj::str(dir.path.c_str());
  EXPECT_EQ(run(kj::mv(launchRequest)).exitCode, 0);
  EXPECT_EQ(output.read(), dir.path + "\n");
}

TEST_F(LocalExecutorTest, UsageIsRecorded) {
  auto status = run(request({"sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"}));
  EXPECT_EQ(status.exitCode, 0);
  EXPECT_GT(status.usage.cpuUserMicros, 0u);
  // A small job's peak cannot be told from what it inherited of this process's at exec.
  EXPECT_EQ(status.usage.peakMemoryBytes, 0u);
  // A job larger than this process reports its own.
  auto big = run(request({"python3", "-c", "b = b'x' * (160 << 20)"}));
  EXPECT_EQ(big.exitCode, 0);
  EXPECT_GE(big.usage.peakMemoryBytes, uint64_t(160) << 20);
  EXPECT_LT(big.usage.peakMemoryBytes, uint64_t(400) << 20);
}

TEST_F(LocalExecutorTest, PidIsolationMakesTheJobPidOneWithAFreshProc) {
  auto launchRequest = request({"sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$'"});
  launchRequest.isolation.pid = true;
  auto process = start(kj::mv(launchRequest));
  EXPECT_NE(process->pid(), 1);
  auto status = process->onExit().wait(io.waitScope);
  EXPECT_EQ(status.exitCode, 0);
  // The shell is 1; `ls` is its child, 2 or so. A host /proc would list hundreds.
  std::string content = output.read();
  ASSERT_EQ(content.substr(0, 2), "1\n") << content;
  size_t processes = 0;
  for (size_t start = 2; start < content.size(); start = content.find('\n', start) + 1) {
    ++processes;
    EXPECT_LT(atoi(content.c_str() + start), 10) << content;
  }
  EXPECT_GE(processes, 1u);
  EXPECT_LE(processes, 3u) << content;
}

TEST_F(LocalExecutorTest, NetIsolationLeavesOnlyLoopbackAndBringsItUp) {
  auto launchRequest = request({"sh", "-c",
                                "readlink /proc/self/ns/net; "
                                "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
                                "ip -o link show | cut -d' ' -f2,3"});
  launchRequest.isolation.net = true;
  EXPECT_EQ(run(kj::mv(launchRequest)).exitCode, 0);
  std::string content = output.read();
  std::string hostNet = readLink("/proc/self/ns/net");
  EXPECT_EQ(content.find(hostNet), std::string::npos) << content;
  size_t afterNs = content.find('\n') + 1;
  std::string interfaces = content.substr(afterNs);
  EXPECT_EQ(interfaces.substr(0, 3), "lo\n") << content;
  std::string links = interfaces.substr(3);
  EXPECT_EQ(links.substr(0, 4), "lo: ") << content;
  EXPECT_NE(links.find(",UP"), std::string::npos) << content;
  EXPECT_EQ(std::count(links.begin(), links.end(), '\n'), 1) << content;
}

TEST_F(LocalExecutorTest, MountIsolationStopsPropagationFromTheHost) {
  // A shared mount on the host would propagate new submounts into a plain copy of the mount
  // namespace; the job's copy must be private, so a mount made after it started stays out.
  TempDir dir;
  if (mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=1m") < 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(errno);
  }
  KJ_DEFER(umount2(dir.path.c_str(), MNT_DETACH));
  KJ_SYSCALL(mount(nullptr, dir.path.c_str(), nullptr, MS_SHARED, nullptr));
  std::string late = dir.path + "/late";
  KJ_SYSCALL(mkdir(late.c_str(), 0755));

  auto launchRequest = request({"sleep", "1000"});
  launchRequest.isolation.mount = true;
  auto process = start(kj::mv(launchRequest));
  std::string procDir = "/proc/" + std::to_string(process->pid());
  EXPECT_NE(readLink(procDir + "/ns/mnt"), readLink("/proc/self/ns/mnt"));

  KJ_SYSCALL(mount("tmpfs", late.c_str(), "tmpfs", 0, "size=1m"));
  KJ_DEFER(umount2(late.c_str(), MNT_DETACH));

  auto readFile = [](const std::string& path) {
    std::string content;
    FILE* file = fopen(path.c_str(), "r");
    KJ_ASSERT(file != nullptr, path);
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0) content.append(buffer, n);
    fclose(file);
    return content;
  };
  std::string hostMounts = readFile("/proc/self/mountinfo");
  std::string jobMounts = readFile(procDir + "/mountinfo");
  EXPECT_NE(hostMounts.find(" " + late + " "), std::string::npos);
  EXPECT_NE(jobMounts.find(" " + dir.path + " "), std::string::npos) << jobMounts;
  EXPECT_EQ(jobMounts.find(" " + late + " "), std::string::npos) << jobMounts;
  EXPECT_EQ(jobMounts.find("shared:"), std::string::npos) << jobMounts;

  process->signalAll(SIGKILL);
  EXPECT_EQ(process->onExit().wait(io.waitScope).termSignal, SIGKILL);
}

TEST_F(LocalExecutorTest, ProcessStartTimeReadsAStrangeCommandName) {
  // comm may hold spaces and ')'; the parser must count fields after the last ')'.
  TempDir dir;
  std::string strange = dir.path + "/a) b (c";
  KJ_SYSCALL(symlink("/bin/sleep", strange.c_str()));
  auto process = start(request({strange.c_str(), "1000"}));
  KJ_IF_MAYBE (jobStart, processStartTime(process->pid())) {
    KJ_IF_MAYBE (ownStart, processStartTime(getpid())) {
      EXPECT_GE(*jobStart, *ownStart);
    } else {
      ADD_FAILURE() << "no start time for the test process";
    }
  } else {
    ADD_FAILURE() << "no start time for the job";
  }
  process->signalAll(SIGKILL);
  process->onExit().wait(io.waitScope);
}

TEST_F(LocalExecutorTest, AChildStoppedBeforeExecNeitherBlocksTheLoopNorStaysBehind) {
  // The attack: another job of the run-as user stops the new job's process between the switch
  // to that user and exec. The hold makes the window wide enough to hit every time.
  TempDir dir;
  std::string program = dir.path + "/held";
  EXPECT_EQ(system(("cp /bin/true '" + program + "'").c_str()), 0);
  ExecHold hold(program);
  if (!hold.error.empty())
    GTEST_SKIP() << "cannot take a lease on " << program << ": " << hold.error;

  auto& timer = io.provider->getTimer();
  LocalExecutor executor{io.unixEventPort, timer, 500 * kj::MILLISECONDS};
  auto launchStart = timer.now();
  auto launching = executor.launch(request({program.c_str()}));
  auto children = childrenOnceLaunched();
  ASSERT_EQ(children.size(), 1u);
  pid_t child = children[0];
  KJ_SYSCALL(kill(child, SIGSTOP));
  for (int attempt = 0; attempt < 500 && processState(child) != 'T'; ++attempt) usleep(1000);
  ASSERT_EQ(processState(child), 'T');
  // Without the hold it would still be stopped before exec.
  hold.release();

  // The event loop keeps running while the launch is pending.
  // A 50 ms timer fires in about 50 ms: nothing of the held launch runs on the loop.
  EXPECT_LT(millisToWaitFor(io, 50 * kj::MILLISECONDS), 1000);
  EXPECT_FALSE(launching.poll(io.waitScope));
  EXPECT_EQ(processState(child), 'T');

  auto result = launching.wait(io.waitScope);
  EXPECT_GE(timer.now() - launchStart, 500 * kj::MILLISECONDS);
  ASSERT_TRUE(result.is<LaunchFailure>());
  auto& failure = result.get<LaunchFailure>();
  EXPECT_EQ(failure.errorNumber, ETIMEDOUT);
  EXPECT_EQ(text(failure.message),
            "the command did not start within 500ms (it was stopped or is stuck before exec)");
  // Killed and reaped: not even a zombie is left.
  EXPECT_EQ(processState(child), 0);
  EXPECT_TRUE(childrenOfThisProcess().empty());
}

TEST_F(LocalExecutorTest, AHeldChildDoesNotDelayOtherLaunches) {
  // The launcher thread of a stopped child waits for it; the other launches go on.
  TempDir dir;
  std::string program = dir.path + "/held";
  EXPECT_EQ(system(("cp /bin/true '" + program + "'").c_str()), 0);
  ExecHold hold(program);
  if (!hold.error.empty())
    GTEST_SKIP() << "cannot take a lease on " << program << ": " << hold.error;

  auto& timer = io.provider->getTimer();
  LocalExecutor executor{io.unixEventPort, timer, 5 * kj::SECONDS};
  auto held = executor.launch(request({program.c_str()}));
  auto children = childrenOnceLaunched();
  ASSERT_EQ(children.size(), 1u);
  pid_t child = children[0];
  KJ_SYSCALL(kill(child, SIGSTOP));
  for (int attempt = 0; attempt < 500 && processState(child) != 'T'; ++attempt) usleep(1000);
  ASSERT_EQ(processState(child), 'T');
  hold.release();

  for (int i = 0; i < 3; ++i) {
    auto begin = timer.now();
    auto result = executor.launch(request({"true"})).wait(io.waitScope);
    ASSERT_TRUE(result.is<kj::Own<Process>>());
    EXPECT_EQ(result.get<kj::Own<Process>>()->onExit().wait(io.waitScope).exitCode, 0);
    EXPECT_LT(timer.now() - begin, 1 * kj::SECONDS);
  }
  EXPECT_FALSE(held.poll(io.waitScope));
}

TEST_F(LocalExecutorTest, TheDefaultLaunchTimeoutIsTenSeconds) {
  EXPECT_EQ(LAUNCH_TIMEOUT, 10 * kj::SECONDS);
  EXPECT_EQ(text(kj::str(LAUNCH_TIMEOUT)), "10s");
}

TEST_F(LocalExecutorTest, CancellingAPendingLaunchKillsAndReapsTheChild) {
  TempDir dir;
  std::string program = dir.path + "/held";
  EXPECT_EQ(system(("cp /bin/true '" + program + "'").c_str()), 0);
  ExecHold hold(program);
  if (!hold.error.empty())
    GTEST_SKIP() << "cannot take a lease on " << program << ": " << hold.error;

  size_t descriptorsBefore = openDescriptors();
  pid_t child;
  {
    auto launching = executor.launch(request({program.c_str()}));
    auto children = childrenOnceLaunched();
    ASSERT_EQ(children.size(), 1u);
    child = children[0];
    EXPECT_FALSE(launching.poll(io.waitScope));
    EXPECT_NE(processState(child), 0);
  }
  // Killed at once, and reaped on the event loop as soon as its launcher thread has let go of
  // it: the cancellation itself never waits for that thread.
  for (int i = 0; i < 2000 && processState(child) != 0; ++i) {
    io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
  }
  EXPECT_EQ(processState(child), 0);
  EXPECT_TRUE(childrenOfThisProcess().empty());
  EXPECT_EQ(openDescriptors(), descriptorsBefore);
}

TEST_F(LocalExecutorTest, ALaunchThatFailsAfterBeingHeldIsStillReported) {
  // The event loop turns while a child is held, and the report arrives through it.
  TempDir dir;
  // Executable, but no format the kernel knows: exec fails after opening it, past the hold.
  std::string program = dir.path + "/no-format";
  EXPECT_EQ(
      system(("printf '\\001\\002\\003\\004' > '" + program + "' && chmod 0755 '" + program + "'")
                 .c_str()),
      0);
  ExecHold hold(program);
  if (!hold.error.empty())
    GTEST_SKIP() << "cannot take a lease on " << program << ": " << hold.error;

  auto launching = executor.launch(request({program.c_str()}));
  EXPECT_LT(millisToWaitFor(io, 50 * kj::MILLISECONDS), 1000);
  EXPECT_FALSE(launching.poll(io.waitScope));
  hold.release();
  auto result = launching.wait(io.waitScope);
  ASSERT_TRUE(result.is<LaunchFailure>());
  EXPECT_EQ(result.get<LaunchFailure>().errorNumber, ENOEXEC);
  EXPECT_EQ(text(result.get<LaunchFailure>().message), "exec " + program + ": Exec format error");
  EXPECT_TRUE(childrenOfThisProcess().empty());
}

// LaunchRequest::beforeStart: the caller's step (runner-supervisor's record of the launch) runs
// on the launcher thread, before the child exists, and a failure or a cancellation meanwhile
// leaves no process behind.
TEST_F(LocalExecutorTest, BeforeStartRunsOnTheLauncherThreadBeforeTheJob) {
  TempDir dir;
  auto marker = dir.path + "/recorded";
  pid_t loopThread = gettid();
  pid_t hookThread = 0;
  int calls = 0;
  auto launch = request({"sh", "-c", ("test -f '" + marker + "'").c_str()});
  launch.beforeStart = [&]() {
    ++calls;
    hookThread = gettid();
    int fd = open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    KJ_ASSERT(fd >= 0, strerror(errno));
    close(fd);
  };
  auto status = run(kj::mv(launch));
  EXPECT_EQ(status.exitCode, 0) << "the job ran before beforeStart had written its marker";
  EXPECT_EQ(calls, 1);
  EXPECT_NE(hookThread, 0);
  EXPECT_NE(hookThread, loopThread);
}

TEST_F(LocalExecutorTest, WhatBeforeStartThrowsFailsTheLaunchAndNothingRuns) {
  TempDir dir;
  auto ran = dir.path + "/ran";
  KJ_SYSCALL(chmod(dir.path.c_str(), 0777));  // the job could make it
  auto launch = request({"touch", ran.c_str()});
  launch.beforeStart = []() { KJ_FAIL_REQUIRE("the record could not be written"); };
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { executor.launch(kj::mv(launch)).wait(io.waitScope); })) {
    EXPECT_NE(std::string(e->getDescription().cStr()).find("the record could not be written"),
              std::string::npos)
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "the launch went on after beforeStart threw";
  }
  EXPECT_TRUE(childrenOfThisProcess().empty());
  EXPECT_NE(access(ran.c_str(), F_OK), 0);
  // The launcher thread is free again.
  EXPECT_EQ(run(request({"true"})).exitCode, 0);
}

TEST_F(LocalExecutorTest, ALaunchCancelledWhileBeforeStartRunsNeitherWaitsForItNorStartsAJob) {
  TempDir dir;
  auto ran = dir.path + "/ran";
  KJ_SYSCALL(chmod(dir.path.c_str(), 0777));  // the job could make it
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
  kj::AutoCloseFd readEnd(fds[0]), writeEnd(fds[1]);
  bool entered = false;
  auto launch = request({"touch", ran.c_str()});
  launch.beforeStart = [&entered, fd = readEnd.get()]() {
    __atomic_store_n(&entered, true, __ATOMIC_SEQ_CST);
    // Held as a disk that does not answer would hold it.
    char byte;
    KJ_SYSCALL(read(fd, &byte, 1));
  };
  auto& clock = kj::systemPreciseMonotonicClock();
  {
    auto launching = executor.launch(kj::mv(launch));
    for (int i = 0; i < 2000 && !__atomic_load_n(&entered, __ATOMIC_SEQ_CST); ++i) {
      io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
    }
    ASSERT_TRUE(__atomic_load_n(&entered, __ATOMIC_SEQ_CST));
    EXPECT_FALSE(launching.poll(io.waitScope));
    auto begin = clock.now();
    launching = nullptr;
    EXPECT_LT(clock.now() - begin, 100 * kj::MILLISECONDS) << "the cancellation waited";
  }
  // Let go: the thread returns, sees the launch given up, and creates nothing.
  KJ_SYSCALL(write(writeEnd.get(), "x", 1));
  io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS).wait(io.waitScope);
  EXPECT_TRUE(childrenOfThisProcess().empty());
  EXPECT_NE(access(ran.c_str(), F_OK), 0);
  EXPECT_EQ(run(request({"true"})).exitCode, 0);
}

TEST_F(LocalExecutorTest, TheLaunchTimeoutDoesNotCountWhileBeforeStartRuns) {
  auto& timer = io.provider->getTimer();
  LocalExecutor executor{io.unixEventPort, timer, 100 * kj::MILLISECONDS};
  auto launch = request({"true"});
  launch.beforeStart = []() { usleep(400 * 1000); };
  auto result = executor.launch(kj::mv(launch)).wait(io.waitScope);
  ASSERT_TRUE(result.is<kj::Own<Process>>())
      << "failed: " << result.get<LaunchFailure>().message.cStr();
  EXPECT_EQ(result.get<kj::Own<Process>>()->onExit().wait(io.waitScope).exitCode, 0);
}

TEST(ProcessStartTime, OfThisProcessIsStableAndOfAReapedOneIsNull) {
  auto first = processStartTime(getpid());
  auto second = processStartTime(getpid());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_GT(KJ_ASSERT_NONNULL(first), 0u);
  EXPECT_EQ(KJ_ASSERT_NONNULL(first), KJ_ASSERT_NONNULL(second));

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(processStartTime(child), nullptr);
}

}  // namespace
}  // namespace runner::executors

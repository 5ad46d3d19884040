// The cgroup executor on this host's real cgroups (v1 here, v2 where the host has it), with
// real processes running as runner-jobs: limits hold, the whole job dies with its main
// process, OOM kills and usage come from the cgroup counters, nothing is left behind.

#include "executors/cgroup/cgroup-executor.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "executors/cgroup/cgroup-dir.h"
#include "executors/cgroup/cgroup-v1.h"
#include "executors/cgroup/cgroup-v2.h"

namespace runner::executors::cgroup {
namespace {

using Clock = std::chrono::steady_clock;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

// Waits up to 2 s for `path` to be gone: the executor removes an ended job's cgroup on a thread
// of its own, right after reporting the end.
bool removedSoon(const std::string& path) {
  for (int i = 0; i < 200 && exists(path); ++i) usleep(10000);
  return !exists(path);
}

// Lines (pids) in a cgroup's cgroup.procs.
size_t countProcesses(const std::string& cgroupPath) {
  std::ifstream in(cgroupPath + "/cgroup.procs");
  size_t count = 0;
  std::string line;
  while (std::getline(in, line)) count += !line.empty();
  return count;
}

// Dead, or a zombie waiting for init to reap it.
bool processIsGone(pid_t pid) {
  if (kill(pid, 0) < 0 && errno == ESRCH) return true;
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

class CgroupExecutorTest : public testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: creates cgroups and switches users";
    struct passwd* user = getpwnam("runner-jobs");
    if (user == nullptr) {
      GTEST_SKIP() << "needs the runner-jobs user (useradd --system --home-dir /nonexistent "
                      "--shell /usr/sbin/nologin runner-jobs)";
    }
    uid = user->pw_uid;
    gid = user->pw_gid;

    mkdir("/var/lib/runner-tests", 0755);
    char pattern[] = "/var/lib/runner-tests/cgroup-executor-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    workDir = pattern;
    ASSERT_EQ(chmod(workDir.c_str(), 0777), 0);
    outputFd = open((workDir + "/output").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(outputFd, 0);

    parent = "runner-test-" + std::to_string(getpid());
    kj::Own<CgroupDriver> driver;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   driver = newHostCgroupDriver(kj::StringPtr(parent.c_str()));
                 })) {
      GTEST_SKIP() << "no usable cgroup hierarchy: " << exception->getDescription().cStr();
    }
    version = driver->version();
    findParentDirs();
    executor = kj::heap<CgroupExecutor>(io.unixEventPort, io.provider->getTimer(), kj::mv(driver));
  }

  void TearDown() override {
    executor = nullptr;
    for (auto& dir : parentDirs) rmdir(dir.c_str());
    if (outputFd >= 0) close(outputFd);
    if (!workDir.empty()) {
      nftw(
          workDir.c_str(),
          [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
          FTW_DEPTH | FTW_PHYS);
    }
  }

  // The parent of this test's job cgroups in every hierarchy the driver may use.
  void findParentDirs() {
    CgroupMounts mounts = parseCgroupMounts(readFile("/proc/self/mountinfo").c_str());
    std::string procSelfCgroup = readFile("/proc/self/cgroup");
    auto add = [&](kj::StringPtr mountPoint, kj::Maybe<kj::String> own, bool hasPids) {
      KJ_IF_MAYBE (path, own) {
        auto relative = resolveCgroupParent(*path, parent.c_str());
        parentDirs.push_back(joinPath({mountPoint, relative}).cStr());
        if (hasPids) pidsParentDir = parentDirs.back();
      }
    };
    if (version == 1) {
      for (auto& h : mounts.v1) {
        bool hasPids = false;
        for (auto& controller : h.controllers) hasPids = hasPids || controller == "pids";
        add(h.mountPoint, ownCgroup(procSelfCgroup.c_str(), kj::StringPtr(h.controllers[0])),
            hasPids);
      }
    } else KJ_IF_MAYBE (v2, mounts.v2) {
      add(v2->mountPoint, ownCgroup(procSelfCgroup.c_str(), nullptr), true);
    }
  }

  // Whether any job cgroup is under this test's parents.
  bool anyLeft() {
    static bool found;
    found = false;
    for (auto& dir : parentDirs) {
      if (!exists(dir)) continue;
      nftw(
          dir.c_str(),
          [](const char*, const struct stat*, int type, struct FTW* walk) {
            if (type == FTW_D && walk->level > 0) found = true;
            return 0;
          },
          16, FTW_PHYS);
    }
    return found;
  }

  // No job cgroup is left under this test's parents, once the executor's remover thread has had
  // up to 2 s to remove those of ended jobs.
  void expectNothingLeftBehind() {
    for (int i = 0; i < 200 && anyLeft(); ++i) usleep(10000);
    for (auto& dir : parentDirs) {
      if (!exists(dir)) continue;
      nftw(
          dir.c_str(),
          [](const char* path, const struct stat*, int type, struct FTW* walk) {
            EXPECT_FALSE(type == FTW_D && walk->level > 0) << "left behind: " << path;
            return 0;
          },
          16, FTW_PHYS);
    }
  }

  LaunchRequest request(std::initializer_list<const char*> argv, Limits limits = Limits()) {
    LaunchRequest r;
    r.jobId = kj::str("job-", ++jobCount);
    r.argv = KJ_MAP(arg, argv) {
      return kj::heapString(arg);
    };
    r.env = kj::arr(kj::str("PATH=/usr/bin:/bin"), kj::str("LANG=C"));
    r.workingDir = kj::heapString(workDir.c_str());
    r.outputFd = outputFd;
    r.credentials.uid = uid;
    r.credentials.gid = gid;
    r.credentials.userName = kj::str("runner-jobs");
    r.credentials.homeDir = kj::str("/nonexistent");
    r.limits = limits;
    return r;
  }

  kj::Own<Process> start(LaunchRequest&& r) {
    auto result = executor->launch(kj::mv(r)).wait(io.waitScope);
    KJ_SWITCH_ONEOF(result) {
      KJ_CASE_ONEOF(process, kj::Own<Process>) {
        return kj::mv(process);
      }
      KJ_CASE_ONEOF(failure, LaunchFailure) {
        KJ_FAIL_ASSERT("the job did not start", failure.message);
      }
    }
    KJ_UNREACHABLE;
  }

  std::string output() {
    std::string text;
    char buffer[4096];
    ssize_t n;
    for (off_t offset = 0; (n = pread(outputFd, buffer, sizeof(buffer), offset)) > 0;) {
      text.append(buffer, n);
      offset += n;
    }
    return text;
  }

  void sleepFor(kj::Duration duration) {
    io.provider->getTimer().afterDelay(duration).wait(io.waitScope);
  }

  // KJ types have throwing destructors, which a gtest fixture's members may not have.
  struct Loop {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    kj::Own<CgroupExecutor> executor;
  };
  std::unique_ptr<Loop> loop = std::make_unique<Loop>();
  kj::AsyncIoContext& io = loop->io;
  kj::Own<CgroupExecutor>& executor = loop->executor;
  uint8_t version = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string workDir;
  int outputFd = -1;
  std::string parent;
  std::vector<std::string> parentDirs;
  // The one of parentDirs in the hierarchy with the pids controller.
  std::string pidsParentDir;
  int jobCount = 0;
};

// The caller's step before a start (runner-supervisor's record naming the job) comes before
// anything named after the job: its cgroups are made after it, on the same launcher thread.
TEST_F(CgroupExecutorTest, TheJobsCgroupsAreMadeAfterBeforeStart) {
  auto launch = request({"true"});
  std::string name = launch.jobId.cStr();
  int cgroupsSeen = -1;
  launch.beforeStart = [&]() {
    cgroupsSeen = 0;
    for (auto& dir : parentDirs) cgroupsSeen += exists(dir + "/" + name);
  };
  auto process = start(kj::mv(launch));
  EXPECT_EQ(cgroupsSeen, 0);
  auto& placement = KJ_ASSERT_NONNULL(process->placement().cgroup);
  EXPECT_TRUE(exists(placement.path.cStr()));
  EXPECT_EQ(process->onExit().wait(io.waitScope).exitCode, 0);
}

TEST_F(CgroupExecutorTest, ALaunchWhoseBeforeStartThrowsLeavesNoCgroup) {
  auto launch = request({"true"});
  launch.beforeStart = []() { KJ_FAIL_REQUIRE("no record"); };
  EXPECT_THROW(executor->launch(kj::mv(launch)).wait(io.waitScope), kj::Exception);
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, PlacementNamesTheCgroup) {
  auto process = start(request({"true"}));
  auto& placement = KJ_ASSERT_NONNULL(process->placement().cgroup);
  EXPECT_EQ(placement.version, version);
  std::string path = placement.path.cStr();
  EXPECT_NE(path.find(parent + "/job-1"), std::string::npos) << path;
  // The leftover checks below look in the right place: the job's cgroup is under them.
  bool underAParent = false;
  for (auto& dir : parentDirs) underAParent = underAParent || path == dir + "/job-1";
  EXPECT_TRUE(underAParent) << path;
  EXPECT_TRUE(exists(path));
  EXPECT_EQ(placement.ioDevice, "") << "no io limit, no device";
  ExitStatus status = process->onExit().wait(io.waitScope);
  EXPECT_FALSE(status.signaled);
  EXPECT_EQ(status.exitCode, 0);
  EXPECT_TRUE(removedSoon(path));
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, MemoryHogUnder64MiBIsOomKilled) {
  Limits limits;
  limits.memoryBytes = 64 << 20;
  auto started = Clock::now();
  // The main process is a shell that outlives the hog, so the victim is never the main one:
  // which of stress-ng's own processes the kernel picks varies (usually its worker; once in CI,
  // stress-ng itself as its worker was exiting at the 5 s mark).
  auto process = start(request(
      {"sh", "-c", "stress-ng --vm 1 --vm-bytes 256M -t 5; echo stress-ng ended $?"}, limits));
  ExitStatus status = process->onExit().wait(io.waitScope);
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::cout << "stress-ng under 64 MiB: ended after " << seconds << " s, exit " << status.exitCode
            << " signal " << status.termSignal << ", peak " << status.usage.peakMemoryBytes
            << " bytes; " << output() << std::endl;
  EXPECT_TRUE(status.oomKilled) << output();
  EXPECT_FALSE(status.signaled) << "the shell outlived the OOM kill";
  EXPECT_EQ(status.exitCode, 0);
  EXPECT_FALSE(status.oomKilledMain) << "a process of the job was the victim, not the main one";
  EXPECT_NE(output().find("stress-ng ended "), std::string::npos) << output();
  EXPECT_LE(status.usage.peakMemoryBytes, uint64_t(64 << 20));
  EXPECT_LT(seconds, 30);
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, MainProcessOomKilledIsReportedAsSuch) {
  Limits limits;
  limits.memoryBytes = 32 << 20;
  // The shell doubles a string until the kernel kills it: the main process is the victim.
  auto process =
      start(request({"sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"}, limits));
  ExitStatus status = process->onExit().wait(io.waitScope);
  EXPECT_TRUE(status.signaled);
  EXPECT_EQ(status.termSignal, SIGKILL);
  EXPECT_TRUE(status.oomKilled);
  EXPECT_TRUE(status.oomKilledMain);
  expectNothingLeftBehind();
}

// The parent cgroups are made once; one removed by hand between two jobs is made again.
TEST_F(CgroupExecutorTest, AParentRemovedBetweenJobsIsMadeAgain) {
  for (int round = 0; round < 2; ++round) {
    Limits limits;
    limits.pids = 64;
    auto process = start(request({"sh", "-c", "exit 4"}, limits));
    std::string path = KJ_ASSERT_NONNULL(process->placement().cgroup).path.cStr();
    ExitStatus status = process->onExit().wait(io.waitScope);
    EXPECT_EQ(status.exitCode, 4);
    process = nullptr;
    EXPECT_TRUE(removedSoon(path));
    // Every parent the job had, as an operator cleaning up might.
    int removed = 0;
    for (auto& dir : parentDirs) {
      if (rmdir(dir.c_str()) == 0) {
        ++removed;
      } else {
        EXPECT_EQ(errno, ENOENT) << dir << ": " << strerror(errno);
      }
    }
    EXPECT_GT(removed, 0);
  }
}

TEST_F(CgroupExecutorTest, ANormalExitIsNotAnOomKill) {
  Limits limits;
  limits.memoryBytes = 64 << 20;
  auto process = start(request({"sh", "-c", "exit 3"}, limits));
  ExitStatus status = process->onExit().wait(io.waitScope);
  EXPECT_EQ(status.exitCode, 3);
  EXPECT_FALSE(status.oomKilled);
  EXPECT_FALSE(status.oomKilledMain);
}

TEST_F(CgroupExecutorTest, ForkBombStaysWithinThePidsLimitAndKillAllEndsIt) {
  Limits limits;
  limits.pids = 32;
  // The bomb runs in the background; the main process then becomes `sleep`, which needs no fork.
  auto process = start(request({"sh", "-c", "f() { f | f & }; f; exec sleep 60"}, limits));
  std::string path = KJ_ASSERT_NONNULL(process->placement().cgroup).path.cStr();
  std::string pidsPath = pidsParentDir + path.substr(path.rfind('/'));
  // The bomb may burn out before it is sampled at its peak; the kernel's count of refused forks
  // ("max N" in pids.events) proves that it hit the limit.
  size_t most = 0;
  uint64_t refused = 0;
  for (int i = 0; i < 100 && (i < 20 || refused == 0); ++i) {
    sleepFor(50 * kj::MILLISECONDS);
    most = std::max(most, countProcesses(path));
    refused = std::stoull("0" + readFile(pidsPath + "/pids.events").substr(4));
  }
  std::cout << "fork bomb under pids 32: at most " << most << " processes seen, " << refused
            << " forks refused" << std::endl;
  EXPECT_LE(most, 32u);
  EXPECT_GT(refused, 0u) << "the bomb should have pressed against the limit";
  if (exists(pidsPath + "/pids.peak")) {
    EXPECT_LE(std::stoull(readFile(pidsPath + "/pids.peak")), 32u);
  }

  process->signalAll(SIGKILL);
  ExitStatus status = process->onExit().wait(io.waitScope);
  EXPECT_TRUE(status.signaled);
  EXPECT_EQ(status.termSignal, SIGKILL);
  EXPECT_TRUE(removedSoon(path));
  expectNothingLeftBehind();
}

// Seconds all CPUs of the machine have been idle (idle and iowait in /proc/stat).
double machineIdleSeconds() {
  std::istringstream stat(readFile("/proc/stat"));
  std::string cpu;
  uint64_t user, nice, system, idle, iowait;
  stat >> cpu >> user >> nice >> system >> idle >> iowait;
  return double(idle + iowait) / double(sysconf(_SC_CLK_TCK));
}

TEST_F(CgroupExecutorTest, BusyLoopUnderHalfACoreGetsHalfACore) {
  Limits limits;
  limits.cpuMillicores = 500;
  auto started = Clock::now();
  double idleBefore = machineIdleSeconds();
  auto process = start(request({"timeout", "2", "sh", "-c", "while :; do :; done"}, limits));
  ExitStatus status = process->onExit().wait(io.waitScope);
  double wall = std::chrono::duration<double>(Clock::now() - started).count();
  double idle = (machineIdleSeconds() - idleBefore) / wall;
  double cpu = double(status.usage.cpuUserMicros + status.usage.cpuSystemMicros) / 1e6;
  double share = cpu / wall;
  std::cout << "busy loop under 500 millicores: " << cpu << " s of CPU in " << wall
            << " s of wall time = " << share * 100 << "% of one core; the machine had "
            << idle * 100 << "% of a core idle" << std::endl;
  EXPECT_EQ(status.exitCode, 124) << "timeout ended the loop";
  // Never more than the quota; as much of it as the machine had to give (other work may hold
  // the CPUs: what the loop got plus what stayed idle is what it could have had).
  EXPECT_LE(share, 0.5 + 0.15);
  EXPECT_GE(share, kj::min(0.5, share + idle) - 0.15);
}

TEST_F(CgroupExecutorTest, DaemonizedProcessDiesWithTheJob) {
  auto process = start(
      request({"sh", "-c", "setsid sh -c 'exec sleep 1000' </dev/null >/dev/null 2>&1 & echo $!"}));
  std::string path = KJ_ASSERT_NONNULL(process->placement().cgroup).path.cStr();
  ExitStatus status = process->onExit().wait(io.waitScope);
  EXPECT_EQ(status.exitCode, 0);
  pid_t daemon = atoi(output().c_str());
  ASSERT_GT(daemon, 1) << output();
  EXPECT_TRUE(removedSoon(path)) << "the job's cgroup is removed once it has ended";
  // SIGKILLed before the cgroup could be removed; init may take a moment to reap it.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = processIsGone(daemon);
    if (!gone) sleepFor(10 * kj::MILLISECONDS);
  }
  EXPECT_TRUE(gone) << "daemon " << daemon << " survived its job";
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, SignalAllReachesEveryProcessOfTheCgroup) {
  // The trap comes first: once the second process exists, the main one handles SIGTERM.
  auto process = start(
      request({"sh", "-c", "trap 'exit 7' TERM; setsid sleep 1000 & while :; do sleep 0.1; done"}));
  std::string path = KJ_ASSERT_NONNULL(process->placement().cgroup).path.cStr();
  for (int i = 0; i < 100 && countProcesses(path) < 2; ++i) sleepFor(10 * kj::MILLISECONDS);
  process->signalAll(SIGTERM);
  ExitStatus status = process->onExit().wait(io.waitScope);
  EXPECT_EQ(status.exitCode, 7) << "the main process got SIGTERM and ran its trap";
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, DestroyingARunningJobKillsItAndRemovesTheCgroup) {
  auto process = start(request({"sleep", "1000"}));
  pid_t pid = process->pid();
  std::string path = KJ_ASSERT_NONNULL(process->placement().cgroup).path.cStr();
  process = nullptr;
  // Killed at once; reaped and removed on the executor's remover thread, not on the event loop.
  EXPECT_TRUE(removedSoon(path));
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = processIsGone(pid);
    if (!gone) sleepFor(10 * kj::MILLISECONDS);
  }
  EXPECT_TRUE(gone);
  expectNothingLeftBehind();
}

// A supervisor that crashes after a tracked job started and before recording where it runs
// knows only the job's id: the job's tracking cgroup must bear it, a reused spare too.
TEST_F(CgroupExecutorTest, ASpareTrackingCgroupTakesTheNameOfItsNextJob) {
  auto tracked = [&](LaunchRequest&& r) {
    auto result = executor->launchTracked(kj::mv(r)).wait(io.waitScope);
    return kj::mv(KJ_ASSERT_NONNULL(result.tryGet<kj::Own<Process>>(), "the job did not start"));
  };
  auto first = tracked(request({"true"}));
  EXPECT_EQ(first->onExit().wait(io.waitScope).exitCode, 0);
  first = nullptr;

  auto second = tracked(request({"sleep", "1000"}));
  pid_t pid = second->pid();
  auto named = [&](const char* name) {
    for (auto& dir : parentDirs) {
      if (exists(dir + "/" + name)) return dir + "/" + name;
    }
    return std::string();
  };
  std::string path = named("job-2");
  ASSERT_FALSE(path.empty()) << "the second job's cgroup is named after it";
  EXPECT_NE(readFile(path + "/cgroup.procs").find(std::to_string(pid)), std::string::npos);
  EXPECT_TRUE(named("job-1").empty()) << "no cgroup keeps the first job's name: " << named("job-1");

  // What a recovering supervisor does with a job it knows only by id.
  executor->killRemains("job-2", JobTrace()).wait(io.waitScope);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = processIsGone(pid);
    if (!gone) sleepFor(10 * kj::MILLISECONDS);
  }
  EXPECT_TRUE(gone) << "the job ran on in a cgroup its id does not name";
  EXPECT_EQ(second->onExit().wait(io.waitScope).termSignal, SIGKILL);
  second = nullptr;
  executor->drain().wait(io.waitScope);
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, UsageComesFromTheCgroupCounters) {
  auto process = start(request({"sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"}));
  ExitStatus status = process->onExit().wait(io.waitScope);
  std::cout << "usage: user " << status.usage.cpuUserMicros << " us, system "
            << status.usage.cpuSystemMicros << " us, peak " << status.usage.peakMemoryBytes
            << " bytes" << std::endl;
  EXPECT_EQ(status.exitCode, 0);
  EXPECT_GT(status.usage.cpuUserMicros, 0u);
  EXPECT_GT(status.usage.peakMemoryBytes, 0u);
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, ACommandThatCannotStartLeavesNoCgroup) {
  auto result = executor->launch(request({"/nonexistent/command"})).wait(io.waitScope);
  ASSERT_TRUE(result.is<LaunchFailure>());
  EXPECT_EQ(result.get<LaunchFailure>().errorNumber, ENOENT);
  expectNothingLeftBehind();
}

// A working directory that is not there is the request's mistake: refused as a limit the executor
// cannot apply (runnerd answers "invalid"), naming the directory, with nothing left behind.
TEST_F(CgroupExecutorTest, IoLimitWithAMissingWorkingDirectoryIsRefusedAsInvalid) {
  Limits limits;
  limits.ioReadBytesPerSec = 5000000;
  auto r = request({"true"}, limits);
  r.workingDir = kj::str("/nonexistent-runner-test-dir");
  try {
    executor->launch(kj::mv(r)).wait(io.waitScope);
    ADD_FAILURE() << "an io limit needs the working directory's disk";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::UNIMPLEMENTED);
    EXPECT_EQ(std::string(e.getDescription().cStr()),
              "io-read limit: the working directory /nonexistent-runner-test-dir does not exist "
              "(the limit throttles the disk it is on)");
  }
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, IoLimitOnTmpfsFailsNamingTheLimit) {
  struct statfs fs;
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994 /* TMPFS_MAGIC */) {
    GTEST_SKIP() << "/dev/shm is not a tmpfs here";
  }
  Limits limits;
  limits.ioWriteBytesPerSec = 5000000;
  auto r = request({"true"}, limits);
  r.workingDir = kj::str("/dev/shm");
  try {
    executor->launch(kj::mv(r)).wait(io.waitScope);
    ADD_FAILURE() << "an io limit needs a block device";
  } catch (const kj::Exception& e) {
    std::string message = e.getDescription().cStr();
    EXPECT_EQ(message.find("io-write limit: /dev/shm "), 0u) << message;
  }
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, DirectIoWritesAreThrottled) {
  IoDevice device;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(
                              [&]() { device = ioDeviceOf(workDir.c_str(), "io-write limit"); })) {
    GTEST_SKIP() << "the working directory cannot be throttled: "
                 << exception->getDescription().cStr();
  }
  Limits limits;
  limits.ioWriteBytesPerSec = 5000000;
  auto started = Clock::now();
  auto process = start(
      request({"dd", "if=/dev/zero", "of=data", "bs=1M", "count=30", "oflag=direct"}, limits));
  EXPECT_EQ(KJ_ASSERT_NONNULL(process->placement().cgroup).ioDevice, device.describe());
  ExitStatus status = process->onExit().wait(io.waitScope);
  double wall = std::chrono::duration<double>(Clock::now() - started).count();
  double rate = 30.0 * (1 << 20) / wall;
  std::cout << "direct-IO write under 5 MB/s on " << device.describe().cStr() << ": " << rate / 1e6
            << " MB/s over " << wall << " s; dd says: " << output() << std::endl;
  EXPECT_EQ(status.exitCode, 0) << output();
  EXPECT_LT(rate, 6e6);
  EXPECT_GT(rate, 3e6) << "throttled, not stalled";
  expectNothingLeftBehind();
}

TEST_F(CgroupExecutorTest, MissingControllerInTheHierarchyFailsNamingTheLimit) {
  // A driver over this host's hierarchies minus the one the limit needs.
  Limits limits;
  limits.pids = 10;
  kj::Own<CgroupDriver> driver;
  std::string expected;
  std::string cleanup;
  if (version == 1) {
    CgroupMounts mounts = parseCgroupMounts(readFile("/proc/self/mountinfo").c_str());
    kj::Vector<CgroupV1Hierarchy> hierarchies;
    for (auto& h : mounts.v1) {
      bool pids = false;
      for (auto& c : h.controllers) pids = pids || c == "pids";
      if (pids) continue;
      hierarchies.add(CgroupV1Hierarchy{KJ_MAP(c, h.controllers) { return kj::heapString(c);
    }
    , kj::heapString(h.mountPoint), kj::str(parent)
  });
}
driver = kj::heap<CgroupV1Driver>(hierarchies.releaseAsArray());
expected = "pids limit: no cgroup v1 hierarchy with the pids controller is mounted";
}  // namespace
else {
  GTEST_SKIP() << "the v2 case is covered by cgroup_v2_test's directory tree";
}
try {
  driver->create("job-x", limits, nullptr);
  ADD_FAILURE() << "the pids limit cannot be applied without the pids controller";
} catch (const kj::Exception& e) {
  EXPECT_EQ(std::string(e.getDescription().cStr()), expected);
}
expectNothingLeftBehind();
}  // namespace runner::executors::cgroup

TEST_F(CgroupExecutorTest, UnifiedHierarchyWithoutControllersFailsNamingTheLimit) {
  CgroupMounts mounts = parseCgroupMounts(readFile("/proc/self/mountinfo").c_str());
  auto v2 = mounts.v2.map([](CgroupMounts::V2& v) { return kj::heapString(v.mountPoint); });
  KJ_IF_MAYBE (mountPoint, v2) {
    std::string controllers = readFile(std::string(mountPoint->cStr()) + "/cgroup.controllers");
    if (controllers.find("memory") != std::string::npos) {
      GTEST_SKIP() << "the unified hierarchy here has the memory controller";
    }
    std::string parentDir = std::string(mountPoint->cStr()) + "/" + parent;
    {
      CgroupV2Driver driver(kj::heapString(*mountPoint), kj::str(parent));
      Limits limits;
      limits.memoryBytes = 64 << 20;
      try {
        driver.create("job-x", limits, nullptr);
        ADD_FAILURE() << "no memory controller, no memory limit";
      } catch (const kj::Exception& e) {
        EXPECT_EQ(std::string(e.getDescription().cStr()),
                  "memory limit: the memory controller is not available in " +
                      std::string(mountPoint->cStr()) + "/cgroup.controllers");
      }
    }
    EXPECT_FALSE(exists(parentDir + "/job-x"));
    rmdir(parentDir.c_str());
  } else {
    GTEST_SKIP() << "no cgroup2 mount on this host";
  }
}

}  // namespace
}  // namespace runner::executors::cgroup

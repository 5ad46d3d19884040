// The v2 driver against a directory tree standing in for /sys/fs/cgroup: the interface files
// are regular files, so what the driver writes can be read back exactly.

#include "executors/cgroup/cgroup-v2.h"

#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/debug.h>
#include <kj/timer.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace runner::executors::cgroup {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

bool exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

// A temporary tree shaped like a cgroup2 mount: the root cgroup and a "runner" parent.
class CgroupV2Tree : public testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cgroup-v2-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root = pattern;
    ASSERT_EQ(mkdir((root + "/runner").c_str(), 0755), 0);
    setControllers("cpuset cpu io memory hugetlb pids rdma misc\n", "cpu io memory pids\n");
    writeFile(root + "/cgroup.subtree_control", "");
    writeFile(root + "/runner/cgroup.subtree_control", "");
  }

  void TearDown() override {
    nftw(
        root.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }

  void setControllers(const std::string& atRoot, const std::string& atParent) {
    writeFile(root + "/cgroup.controllers", atRoot);
    writeFile(root + "/runner/cgroup.controllers", atParent);
  }

  // Deletes the files the driver wrote into the job's directory, so that rmdir can succeed
  // (cgroupfs directories are empty to rmdir; these are not).
  void emptyJobDir(const std::string& dir) {
    nftw(
        dir.c_str(),
        [](const char* path, const struct stat* info, int, struct FTW* walk) {
          return walk->level > 0 ? ::remove(path) : 0;
        },
        16, FTW_DEPTH | FTW_PHYS);
  }

  CgroupV2Driver driver() {
    return CgroupV2Driver(kj::heapString(root.c_str()), kj::str("runner"));
  }

  std::string root;
  IoDevice disk{254, 0, kj::str("vda")};
};

TEST_F(CgroupV2Tree, WritesEveryLimitToItsInterfaceFile) {
  auto d = driver();
  Limits limits;
  limits.cpuMillicores = 500;
  limits.memoryBytes = 64 << 20;
  limits.ioReadBytesPerSec = 1000000;
  limits.ioWriteBytesPerSec = 5000000;
  limits.pids = 32;
  auto job = d.create("job-1", limits, disk);

  std::string dir = root + "/runner/job-1";
  EXPECT_EQ(job->version(), 2);
  EXPECT_EQ(std::string(job->path().cStr()), dir);
  ASSERT_EQ(job->spawnProcsFds().size(), 1u);
  EXPECT_TRUE(exists(dir + "/cgroup.procs"));
  EXPECT_EQ(readFile(dir + "/cpu.max"), "50000 100000");
  EXPECT_EQ(readFile(dir + "/memory.max"), "67108864");
  EXPECT_EQ(readFile(dir + "/memory.swap.max"), "0");
  EXPECT_EQ(readFile(dir + "/pids.max"), "32");
  EXPECT_EQ(readFile(dir + "/io.max"), "254:0 rbps=1000000 wbps=5000000");
  // Enabled from the root down to the parent, so that the job's cgroup has the controllers.
  EXPECT_EQ(readFile(root + "/cgroup.subtree_control"), "+memory +cpu +pids +io");
  EXPECT_EQ(readFile(root + "/runner/cgroup.subtree_control"), "+memory +cpu +pids +io");

  emptyJobDir(dir);
  job = nullptr;
  EXPECT_FALSE(exists(dir)) << "destroying the JobCgroup removes its directory";
}

TEST_F(CgroupV2Tree, OnlyTheIoLimitThatIsSetIsWritten) {
  auto d = driver();
  Limits limits;
  limits.ioWriteBytesPerSec = 5242880;
  auto job = d.create("job-1", limits, disk);
  std::string dir = root + "/runner/job-1";
  EXPECT_EQ(readFile(dir + "/io.max"), "254:0 wbps=5242880");
  EXPECT_FALSE(exists(dir + "/cpu.max"));
  EXPECT_FALSE(exists(dir + "/memory.max"));
  EXPECT_FALSE(exists(dir + "/pids.max"));
  emptyJobDir(dir);
}

TEST_F(CgroupV2Tree, WithoutLimitsOnlyMemoryAccountingIsEnabled) {
  auto d = driver();
  auto job = d.create("job-1", Limits(), nullptr);
  EXPECT_EQ(readFile(root + "/runner/cgroup.subtree_control"), "+memory");
  EXPECT_FALSE(exists(root + "/runner/job-1/memory.max"));
  EXPECT_FALSE(exists(root + "/runner/job-1/memory.swap.max"));
  emptyJobDir(root + "/runner/job-1");
}

TEST_F(CgroupV2Tree, ControllersAlreadyEnabledAreLeftAlone) {
  // The kernel lists enabled controllers without '+'; nothing needs writing then.
  writeFile(root + "/cgroup.subtree_control", "cpu io memory pids\n");
  writeFile(root + "/runner/cgroup.subtree_control", "cpu memory\n");
  auto d = driver();
  Limits limits;
  limits.cpuMillicores = 250;
  limits.pids = 10;
  auto job = d.create("job-1", limits, nullptr);
  EXPECT_EQ(readFile(root + "/cgroup.subtree_control"), "cpu io memory pids\n");
  EXPECT_EQ(readFile(root + "/runner/cgroup.subtree_control"), "+pids");
  EXPECT_EQ(readFile(root + "/runner/job-1/cpu.max"), "25000 100000");
  emptyJobDir(root + "/runner/job-1");
}

TEST_F(CgroupV2Tree, KillAllWritesOneToCgroupKill) {
  auto d = driver();
  auto job = d.create("job-1", Limits(), nullptr);
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  kj::TimerImpl timer(kj::origin<kj::TimePoint>());
  // v2 needs no waiting: the kill is done when the promise is made.
  EXPECT_TRUE(job->killAll(timer).poll(waitScope));
  EXPECT_EQ(readFile(root + "/runner/job-1/cgroup.kill"), "1");
  emptyJobDir(root + "/runner/job-1");
}

TEST_F(CgroupV2Tree, MissingControllerFailsNamingTheLimit) {
  setControllers("cpu memory pids\n", "cpu memory pids\n");
  auto d = driver();
  Limits limits;
  limits.ioReadBytesPerSec = 1000000;
  try {
    d.create("job-1", limits, disk);
    ADD_FAILURE() << "an io limit without the io controller must fail";
  } catch (const kj::Exception& e) {
    std::string message = e.getDescription().cStr();
    EXPECT_EQ(message.find("io-read limit: "), 0u) << message;
    EXPECT_NE(message.find("io controller is not available"), std::string::npos) << message;
    EXPECT_EQ(e.getType(), kj::Exception::Type::UNIMPLEMENTED);
  }
  EXPECT_FALSE(exists(root + "/runner/job-1")) << "a failed create leaves nothing behind";
}

TEST_F(CgroupV2Tree, ControllerMissingBelowTheRootFailsNamingTheLimit) {
  setControllers("cpu io memory pids\n", "io memory pids\n");
  auto d = driver();
  Limits limits;
  limits.cpuMillicores = 1000;
  try {
    d.create("job-1", limits, nullptr);
    ADD_FAILURE() << "a cpu limit without the cpu controller in the parent must fail";
  } catch (const kj::Exception& e) {
    std::string message = e.getDescription().cStr();
    EXPECT_EQ(message.find("cpu limit: the cpu controller is not available in " + root +
                           "/runner/cgroup.controllers"),
              0u)
        << message;
  }
}

TEST_F(CgroupV2Tree, IoLimitWithoutDeviceFails) {
  auto d = driver();
  Limits limits;
  limits.ioWriteBytesPerSec = 1000;
  try {
    d.create("job-1", limits, nullptr);
    ADD_FAILURE() << "an io limit needs a device";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(std::string(e.getDescription().cStr()).find("io-write limit: "), 0u);
  }
}

TEST_F(CgroupV2Tree, UsageAndOomKillsComeFromTheCgroupCounters) {
  auto d = driver();
  auto job = d.create("job-1", Limits(), nullptr);
  std::string dir = root + "/runner/job-1";
  EXPECT_EQ(job->oomKillCount(), 0u) << "no memory.events yet reads as no OOM kill";
  writeFile(dir + "/cpu.stat", "usage_usec 3500\nuser_usec 2500\nsystem_usec 1000\nnr_periods 0\n");
  writeFile(dir + "/memory.peak", "8388608\n");
  writeFile(dir + "/memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n");
  Usage usage = job->usage();
  EXPECT_EQ(usage.cpuUserMicros, 2500u);
  EXPECT_EQ(usage.cpuSystemMicros, 1000u);
  EXPECT_EQ(usage.peakMemoryBytes, 8388608u);
  EXPECT_EQ(job->oomKillCount(), 2u);
  writeFile(dir + "/cgroup.procs", "");
  EXPECT_TRUE(job->isEmpty());
  writeFile(dir + "/cgroup.procs", "123\n456\n");
  EXPECT_FALSE(job->isEmpty());
  emptyJobDir(dir);
  EXPECT_TRUE(job->tryRemove());
  EXPECT_FALSE(exists(dir));
}

TEST_F(CgroupV2Tree, TooSmallCpuLimitIsRefused) {
  auto d = driver();
  Limits limits;
  limits.cpuMillicores = 5;
  EXPECT_THROW(d.create("job-1", limits, nullptr), kj::Exception);
  EXPECT_FALSE(exists(root + "/runner/job-1"));
}

TEST_F(CgroupV2Tree, ExistingJobCgroupIsNotReused) {
  ASSERT_EQ(mkdir((root + "/runner/job-1").c_str(), 0755), 0);
  auto d = driver();
  EXPECT_THROW(d.create("job-1", Limits(), nullptr), kj::Exception);
  EXPECT_TRUE(exists(root + "/runner/job-1"));
}

}  // namespace
}  // namespace runner::executors::cgroup

// Finding the host's hierarchies and runnerd's own cgroup, and the disk IO limits apply to.

#include "executors/cgroup/cgroup-driver.h"

#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "executors/cgroup/io-device.h"

namespace runner::executors::cgroup {
namespace {

std::string stdString(kj::StringPtr s) {
  return std::string(s.cStr());
}

constexpr kj::StringPtr V1_HOST_CGROUP =
    "9:name=systemd:/\n"
    "4:memory:/process_api/4743\n"
    "2:cpu,cpuacct:/system.slice/runnerd.service\n"
    "0::/\n"_kj;

TEST(OwnCgroup, PicksTheLineOfTheController) {
  EXPECT_EQ(stdString(KJ_ASSERT_NONNULL(ownCgroup(V1_HOST_CGROUP, "memory"_kj))),
            "/process_api/4743");
  EXPECT_EQ(stdString(KJ_ASSERT_NONNULL(ownCgroup(V1_HOST_CGROUP, "cpuacct"_kj))),
            "/system.slice/runnerd.service");
  EXPECT_EQ(stdString(KJ_ASSERT_NONNULL(ownCgroup(V1_HOST_CGROUP, nullptr))), "/");
  EXPECT_TRUE(ownCgroup(V1_HOST_CGROUP, "pids"_kj) == nullptr);
}

TEST(OwnCgroup, ReadsTheUnifiedLineOfAV2Host) {
  auto text = "0::/system.slice/runnerd.service\n"_kj;
  EXPECT_EQ(stdString(KJ_ASSERT_NONNULL(ownCgroup(text, nullptr))),
            "/system.slice/runnerd.service");
  EXPECT_TRUE(ownCgroup(text, "memory"_kj) == nullptr);
}

TEST(CgroupParent, DefaultsToAChildOfTheOwnCgroup) {
  EXPECT_EQ(stdString(defaultCgroupParent("/system.slice/runnerd.service")),
            "/system.slice/runnerd.service/runner");
  EXPECT_EQ(stdString(defaultCgroupParent("/")), "/runner");
  EXPECT_EQ(stdString(resolveCgroupParent("/a/b", "jobs/x")), "/a/b/jobs/x");
  EXPECT_EQ(stdString(resolveCgroupParent("/a/b", "/jobs")), "/jobs") << "absolute: from the root";
}

TEST(CgroupMounts, ParsesV1HierarchiesAndTheUnifiedMount) {
  auto mountinfo =
      "25 24 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "27 25 0:24 /docker/abc /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory\n"
      "28 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
      "29 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
      "30 25 0:27 / /mnt/with\\040space rw - cgroup cgroup rw,pids\n"_kj;
  CgroupMounts mounts = parseCgroupMounts(mountinfo);
  ASSERT_EQ(mounts.v1.size(), 3u) << "the name=systemd hierarchy has no controller";
  EXPECT_EQ(stdString(mounts.v1[0].mountPoint), "/sys/fs/cgroup/cpu,cpuacct");
  ASSERT_EQ(mounts.v1[0].controllers.size(), 2u);
  EXPECT_EQ(stdString(mounts.v1[0].controllers[0]), "cpu");
  EXPECT_EQ(stdString(mounts.v1[0].controllers[1]), "cpuacct");
  EXPECT_EQ(stdString(mounts.v1[1].mountRoot), "/docker/abc");
  EXPECT_EQ(stdString(mounts.v1[2].mountPoint), "/mnt/with space");
  auto& v2 = KJ_ASSERT_NONNULL(mounts.v2);
  EXPECT_EQ(stdString(v2.mountPoint), "/sys/fs/cgroup/unified");
}

TEST(CgroupMounts, AUnifiedOnlyHostAndAHostWithoutCgroups) {
  auto unified =
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "35 22 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"_kj;
  CgroupMounts v2Only = parseCgroupMounts(unified);
  EXPECT_EQ(v2Only.v1.size(), 0u);
  EXPECT_EQ(stdString(KJ_ASSERT_NONNULL(v2Only.v2).mountPoint), "/sys/fs/cgroup");

  auto none =
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "23 22 0:5 / /proc rw - proc proc rw\n"_kj;
  CgroupMounts empty = parseCgroupMounts(none);
  EXPECT_EQ(empty.v1.size(), 0u);
  EXPECT_TRUE(empty.v2 == nullptr);
}

// A tree shaped like /sys/dev/block: "MAJ:MIN" links to device directories, partitions nested
// in their disk's directory as sysfs does.
class FakeSysBlock : public testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/io-device-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root = pattern;
    ASSERT_EQ(mkdir((root + "/devices").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root + "/devices/sda").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root + "/devices/sda/sda2").c_str(), 0755), 0);
    std::ofstream(root + "/devices/sda/dev") << "8:0\n";
    std::ofstream(root + "/devices/sda/sda2/dev") << "8:2\n";
    std::ofstream(root + "/devices/sda/sda2/partition") << "2\n";
    ASSERT_EQ(mkdir((root + "/dev-block").c_str(), 0755), 0);
  }

  void TearDown() override {
    nftw(
        root.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }

  // Makes the device of `path` appear in the fake tree as `target` (relative to root).
  void linkDeviceOf(const char* path, const std::string& target) {
    struct stat info;
    ASSERT_EQ(stat(path, &info), 0);
    std::string link = root + "/dev-block/" + std::to_string(major(info.st_dev)) + ":" +
                       std::to_string(minor(info.st_dev));
    ASSERT_EQ(symlink((root + "/" + target).c_str(), link.c_str()), 0);
  }

  std::string root;
};

TEST_F(FakeSysBlock, APartitionResolvesToItsDisk) {
  struct stat info;
  ASSERT_EQ(stat("/var/tmp", &info), 0);
  if (major(info.st_dev) == 0) GTEST_SKIP() << "/var/tmp is not on a block device here";
  linkDeviceOf("/var/tmp", "devices/sda/sda2");
  IoDevice device =
      ioDeviceOf("/var/tmp", "io-read limit", kj::StringPtr((root + "/dev-block").c_str()));
  EXPECT_EQ(device.major, 8u);
  EXPECT_EQ(device.minor, 0u);
  EXPECT_EQ(stdString(device.describe()), "8:0 (sda)");
}

TEST_F(FakeSysBlock, AWholeDiskIsUsedAsIs) {
  struct stat info;
  ASSERT_EQ(stat("/var/tmp", &info), 0);
  if (major(info.st_dev) == 0) GTEST_SKIP() << "/var/tmp is not on a block device here";
  linkDeviceOf("/var/tmp", "devices/sda");
  IoDevice device =
      ioDeviceOf("/var/tmp", "io-read limit", kj::StringPtr((root + "/dev-block").c_str()));
  EXPECT_EQ(device.major, major(info.st_dev));
  EXPECT_EQ(device.minor, minor(info.st_dev));
  EXPECT_EQ(stdString(device.name), "sda");
}

TEST_F(FakeSysBlock, AnUnknownDeviceFailsNamingTheIoLimit) {
  try {
    ioDeviceOf("/var/tmp", "io-read limit", kj::StringPtr((root + "/dev-block").c_str()));
    ADD_FAILURE() << "a device missing from sysfs must fail";
  } catch (const kj::Exception& e) {
    std::string message = e.getDescription().cStr();
    EXPECT_EQ(message.find("io-read limit: "), 0u) << message;
  }
}

TEST(IoDevice, TmpfsHasNoDiskToThrottle) {
  struct statfs fs;
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994 /* TMPFS_MAGIC */) {
    GTEST_SKIP() << "/dev/shm is not a tmpfs here";
  }
  try {
    ioDeviceOf("/dev/shm", "io-write limit");
    ADD_FAILURE() << "tmpfs has no block device";
  } catch (const kj::Exception& e) {
    std::string message = e.getDescription().cStr();
    EXPECT_EQ(message.find("io-write limit: /dev/shm is on a filesystem without a block device"),
              0u)
        << message;
    EXPECT_EQ(e.getType(), kj::Exception::Type::UNIMPLEMENTED);
  }
}

TEST(IoDevice, TheRealDiskOfVarTmp) {
  struct stat info;
  ASSERT_EQ(stat("/var/tmp", &info), 0);
  if (major(info.st_dev) == 0) GTEST_SKIP() << "/var/tmp is not on a block device here";
  IoDevice device = ioDeviceOf("/var/tmp", "io-read limit");
  EXPECT_GT(device.major, 0u);
  EXPECT_GT(device.name.size(), 0u);
  std::string sysDir = "/sys/block/" + stdString(device.name);
  struct stat sys;
  EXPECT_EQ(stat(sysDir.c_str(), &sys), 0) << "a whole disk appears in /sys/block: " << sysDir;
}

}  // namespace
}  // namespace runner::executors::cgroup

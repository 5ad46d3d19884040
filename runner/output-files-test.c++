#include "runner/output-files.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "runner/test-harness.h"

namespace runner {
namespace {

using testing::TempDir;

std::vector<std::string> namesIn(kj::StringPtr dir) {
  std::vector<std::string> names;
  DIR* entries = opendir(dir.cStr());
  KJ_ASSERT(entries != nullptr, dir);
  while (struct dirent* entry = readdir(entries)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(entries);
  std::sort(names.begin(), names.end());
  return names;
}

size_t sparesIn(kj::StringPtr dir) {
  auto names = namesIn(dir);
  return std::count_if(names.begin(), names.end(),
                       [](const std::string& name) { return name.rfind(".spare-", 0) == 0; });
}

// Waits up to 5 s for `files` to have `count` spares ready.
bool waitReady(const OutputFiles& files, size_t count) {
  for (int attempt = 0; attempt < 5000; ++attempt) {
    if (files.ready() == count) return true;
    usleep(1000);
  }
  return false;
}

// The description of what `func` throws, or "" when it does not throw.
template <typename Func>
std::string thrownBy(Func&& func) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
    return e->getDescription().cStr();
  }
  return "";
}

std::string pathOf(const TempDir& dir, const char* name) {
  return std::string(dir.path().cStr()) + "/" + name;
}

TEST(OutputFilesTest, MakesAnEmptyAppendOnlyFileNamedAfterTheJob) {
  TempDir dir;
  OutputFiles files(dir.path(), 4);
  ASSERT_TRUE(waitReady(files, 4));

  auto fd = files.create("job-1");
  struct stat st;
  ASSERT_EQ(stat(pathOf(dir, "job-1.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_mode & 0777, 0640 & ~0022);
  int flags = fcntl(fd, F_GETFL);
  EXPECT_EQ(flags & O_ACCMODE, O_WRONLY);
  EXPECT_TRUE(flags & O_APPEND);
  EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);

  // What is written through the descriptor is the job's file.
  ASSERT_EQ(write(fd, "hello", 5), 5);
  ASSERT_EQ(stat(pathOf(dir, "job-1.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 5);

  // The spare it took is replaced.
  EXPECT_TRUE(waitReady(files, 4));
  EXPECT_EQ(sparesIn(dir.path()), 4u);
}

size_t openDescriptors() {
  size_t count = 0;
  DIR* dir = opendir("/proc/self/fd");
  KJ_ASSERT(dir != nullptr);
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count;
}

TEST(OutputFilesTest, SparesHoldNoDescriptors) {
  // A server short of descriptors must not lose them to files nobody uses yet.
  TempDir dir;
  size_t before = openDescriptors();
  OutputFiles files(dir.path(), 16);
  ASSERT_TRUE(waitReady(files, 16));
  EXPECT_EQ(openDescriptors(), before + 1) << "only the directory itself is open";
  {
    auto fd = files.create("job-1");
    EXPECT_EQ(openDescriptors(), before + 2);
  }
  ASSERT_TRUE(waitReady(files, 16));
  EXPECT_EQ(openDescriptors(), before + 1);
}

TEST(OutputFilesTest, AnExistingNameIsRefusedAndLeftAlone) {
  TempDir dir;
  OutputFiles files(dir.path(), 2);
  ASSERT_TRUE(waitReady(files, 2));
  {
    auto fd = files.create("job-1");
    ASSERT_EQ(write(fd, "first", 5), 5);
  }
  EXPECT_EQ(thrownBy([&]() { files.create("job-1"); }),
            "unavailable: cannot create the job's output file: File exists");
  struct stat st;
  ASSERT_EQ(stat(pathOf(dir, "job-1.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 5) << "the existing file keeps its content";
  // The spare that could not be used is not left behind.
  EXPECT_TRUE(waitReady(files, 2));
  EXPECT_EQ(sparesIn(dir.path()), 2u);
}

TEST(OutputFilesTest, ASpareRemovedBehindItsBackFallsBackToDirectCreation) {
  TempDir dir;
  OutputFiles files(dir.path(), 3);
  ASSERT_TRUE(waitReady(files, 3));
  for (auto& name : namesIn(dir.path())) unlink(pathOf(dir, name.c_str()).c_str());

  for (int i = 0; i < 5; ++i) {
    auto id = kj::str("job-", i);
    auto fd = files.create(id);
    EXPECT_GE(fd.get(), 0);
    EXPECT_EQ(access(pathOf(dir, kj::str(id, ".log").cStr()).c_str(), F_OK), 0);
  }
}

TEST(OutputFilesTest, ASpareSwappedForAnotherFileIsNotHandedToAJob) {
  // Someone who could write the directory replaces every spare: with a file of another user's,
  // with a link to a file they keep, and with a file that is not empty.
  TempDir dir;
  OutputFiles files(dir.path(), 3);
  ASSERT_TRUE(waitReady(files, 3));
  auto keptPath = pathOf(dir, "kept-by-someone-else");
  int kept = open(keptPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  ASSERT_GE(kept, 0);
  KJ_DEFER(close(kept));
  auto spares = namesIn(dir.path());
  spares.erase(std::remove(spares.begin(), spares.end(), "kept-by-someone-else"), spares.end());
  ASSERT_EQ(spares.size(), 3u);
  auto spare0 = pathOf(dir, spares[0].c_str());
  ASSERT_EQ(chown(spare0.c_str(), 12345, 12345), 0);
  auto spare1 = pathOf(dir, spares[1].c_str());
  ASSERT_EQ(unlink(spare1.c_str()), 0);
  ASSERT_EQ(link(keptPath.c_str(), spare1.c_str()), 0);
  auto spare2 = pathOf(dir, spares[2].c_str());
  ASSERT_EQ(system(("printf planted > '" + spare2 + "'").c_str()), 0);

  for (int i = 0; i < 3; ++i) {
    auto id = kj::str("job-", i);
    auto fd = files.create(id);
    ASSERT_GE(fd.get(), 0);
    // The job gets a new file of runnerd's own, which nobody else holds.
    struct stat st;
    ASSERT_EQ(fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_uid, geteuid());
    EXPECT_EQ(st.st_nlink, 1u);
    EXPECT_EQ(st.st_size, 0);
    EXPECT_EQ(write(fd.get(), "job output", 10), 10);
  }
  struct stat keptInfo;
  ASSERT_EQ(fstat(kept, &keptInfo), 0);
  EXPECT_EQ(keptInfo.st_size, 0) << "the job's output went into the linked file";
}

TEST(OutputFilesTest, WithoutSparesEveryFileIsMadeDirectly) {
  TempDir dir;
  OutputFiles files(dir.path(), 0);
  auto fd = files.create("job-1");
  EXPECT_GE(fd.get(), 0);
  EXPECT_EQ(files.ready(), 0u);
  EXPECT_EQ(namesIn(dir.path()), std::vector<std::string>{"job-1.log"});
}

TEST(OutputFilesTest, SparesAreRemovedOnDestructionAndLeftoversOnConstruction) {
  TempDir dir;
  {
    OutputFiles files(dir.path(), 4);
    ASSERT_TRUE(waitReady(files, 4));
    files.create("job-1");
  }
  EXPECT_EQ(namesIn(dir.path()), std::vector<std::string>{"job-1.log"});

  // A server that crashed leaves its spares behind; the next one removes them and only them.
  int fd = open(pathOf(dir, ".spare-123-7").c_str(), O_WRONLY | O_CREAT, 0640);
  ASSERT_GE(fd, 0);
  close(fd);
  OutputFiles files(dir.path(), 0);
  EXPECT_EQ(namesIn(dir.path()), std::vector<std::string>{"job-1.log"});
}

TEST(OutputFilesTest, AMissingDirectoryIsAClearError) {
  auto message = thrownBy([]() { OutputFiles files("/nonexistent/runner-logs"); });
  EXPECT_NE(message.find("/nonexistent/runner-logs"), std::string::npos) << message;
}

TEST(OutputFilesTest, AnUnwritableDirectoryFailsTheStartNotTheThread) {
  // Not even root may add entries to an immutable directory; without root, mode 0555 does.
  TempDir dir;
  int fd = open(dir.path().cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  KJ_DEFER(close(fd));
  int flags = 0;
  const char* expected = "Permission denied";
  if (geteuid() == 0) {
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) {
      GTEST_SKIP() << "the file system of " << dir.path().cStr() << " has no inode flags";
    }
    int immutable = flags | FS_IMMUTABLE_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &immutable) < 0) {
      GTEST_SKIP() << "cannot make " << dir.path().cStr() << " immutable: " << strerror(errno);
    }
    expected = "Operation not permitted";
  } else {
    ASSERT_EQ(chmod(dir.path().cStr(), 0555), 0);
  }
  KJ_DEFER({
    if (geteuid() == 0) {
      ioctl(fd, FS_IOC_SETFLAGS, &flags);
    } else {
      chmod(dir.path().cStr(), 0755);
    }
  });
  OutputFiles files(dir.path(), 4);
  EXPECT_EQ(thrownBy([&]() { files.create("job-1"); }),
            std::string("unavailable: cannot create the job's output file: ") + expected);
  // The thread tried, failed, and waits for the next start instead of retrying in a loop: it
  // costs no CPU meanwhile.
  auto cpuMillis = []() {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000 +
           (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000;
  };
  usleep(50000);
  auto before = cpuMillis();
  usleep(300000);
  EXPECT_LT(cpuMillis() - before, 60) << "the spare-making thread spins on the failure";
  EXPECT_EQ(files.ready(), 0u);
}

}  // namespace
}  // namespace runner

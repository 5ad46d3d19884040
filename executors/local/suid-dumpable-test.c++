// A root runnerd refuses to switch a starting job to the run-as user while fs.suid_dumpable is
// 1: the starting process shares runnerd's memory, and that setting would let the run-as user
// trace it. The setting is the whole host's, so this test changes what its own process sees
// instead: in a mount namespace of its own, a file saying "1" (then "0") is bind-mounted over
// /proc/sys/fs/suid_dumpable. unshare(CLONE_NEWNS) needs a single-threaded process, hence a
// binary with this one test.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <pwd.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "executors/local/local-executor.h"

namespace runner::executors {
namespace {

void writeFile(const std::string& path, const char* text) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KJ_ASSERT(fd >= 0, path);
  KJ_DEFER(close(fd));
  KJ_ASSERT(write(fd, text, strlen(text)) == ssize_t(strlen(text)));
}

TEST(SuidDumpable, AtOneTheJobIsRefusedWithOneLineAndAtZeroItStarts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: jobs switch to the runner-jobs user";
  struct passwd* user = getpwnam("runner-jobs");
  if (user == nullptr) GTEST_SKIP() << "user runner-jobs does not exist";
  if (unshare(CLONE_NEWNS) < 0)
    GTEST_SKIP() << "cannot unshare the mount namespace: " << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << strerror(errno);

  mkdir("/var/lib/runner-tests", 0755);
  char dirTemplate[] = "/var/lib/runner-tests/suid-dumpable-test.XXXXXX";
  ASSERT_NE(mkdtemp(dirTemplate), nullptr);
  std::string dir = dirTemplate;
  std::string setting = dir + "/suid_dumpable";
  writeFile(setting, "1\n");
  if (mount(setting.c_str(), "/proc/sys/fs/suid_dumpable", nullptr, MS_BIND, nullptr) < 0) {
    GTEST_SKIP() << "cannot bind-mount over /proc/sys/fs/suid_dumpable: " << strerror(errno);
  }
  KJ_DEFER({
    umount2("/proc/sys/fs/suid_dumpable", MNT_DETACH);
    unlink(setting.c_str());
    unlink((dir + "/output").c_str());
    rmdir(dir.c_str());
  });

  auto io = kj::setupAsyncIo();
  LocalExecutor executor(io.unixEventPort, io.provider->getTimer());
  int output = open((dir + "/output").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(output, 0);
  KJ_DEFER(close(output));
  auto request = [&]() {
    LaunchRequest result;
    result.jobId = kj::str("test-job");
    result.argv = kj::arr(kj::str("/bin/true"));
    result.env = kj::arr(kj::str("PATH=/usr/bin:/bin"));
    result.workingDir = kj::str("/");
    result.outputFd = output;
    result.credentials.uid = user->pw_uid;
    result.credentials.gid = user->pw_gid;
    result.credentials.supplementaryGroups = kj::heapArray<gid_t>({user->pw_gid});
    result.credentials.userName = kj::str("runner-jobs");
    result.credentials.homeDir = kj::str("/nonexistent");
    return result;
  };

  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { executor.launch(request()).wait(io.waitScope); })) {
    std::string message = e->getDescription().cStr();
    EXPECT_EQ(message,
              "fs.suid_dumpable is 1: the job user could trace a starting job's process, which "
              "shares runnerd's memory; set it to 0 (the default) or 2");
    EXPECT_EQ(message.find('\n'), std::string::npos);
  } else {
    ADD_FAILURE() << "a job started while fs.suid_dumpable was 1";
  }

  // Read again at every start: once the setting is safe, jobs start.
  writeFile(setting, "0\n");
  auto result = executor.launch(request()).wait(io.waitScope);
  ASSERT_TRUE(result.is<kj::Own<Process>>());
  EXPECT_EQ(result.get<kj::Own<Process>>()->onExit().wait(io.waitScope).exitCode, 0);
}

}  // namespace
}  // namespace runner::executors

#include "executors/reap.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace runner::executors {
namespace {

// A forked child that runs `body` and exits with what it returns, with a pidfd for it.
struct Child {
  pid_t pid;
  kj::AutoCloseFd pidfd;
};

template <typename Body>
Child forkChild(Body body) {
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) _exit(body());
  int fd;
  KJ_SYSCALL(fd = syscall(SYS_pidfd_open, pid, 0));
  return {pid, kj::AutoCloseFd(fd)};
}

TEST(ReapExited, ReportsTheExitCode) {
  auto child = forkChild([]() { return 3; });
  auto status = reapExited(child.pidfd.get(), child.pid);
  EXPECT_FALSE(status.signaled);
  EXPECT_EQ(status.exitCode, 3);
  EXPECT_FALSE(status.oomKilled);
}

TEST(ReapExited, ReportsTheSignalThatKilledTheProcess) {
  auto child = forkChild([]() {
    pause();
    return 0;
  });
  KJ_SYSCALL(kill(child.pid, SIGKILL));
  auto status = reapExited(child.pidfd.get(), child.pid);
  EXPECT_TRUE(status.signaled);
  EXPECT_EQ(status.termSignal, SIGKILL);
}

TEST(ReapExited, ReportsTheCpuTimeAndMemoryOfTheProcess) {
  auto child = forkChild([]() {
    // 96 MiB touched: more than this test process holds, so the peak is the child's own.
    auto memory = static_cast<char*>(malloc(96 << 20));
    if (memory == nullptr) return 1;
    memset(memory, 1, 96 << 20);
    // About 200 ms of CPU time in user space.
    struct timespec start, now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    volatile uint64_t sink = 0;
    do {
      for (int i = 0; i < 100000; i++) sink = sink + i;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
             200000000L);
    return 0;
  });
  auto status = reapExited(child.pidfd.get(), child.pid);
  EXPECT_EQ(status.exitCode, 0);
  EXPECT_GE(status.usage.cpuUserMicros + status.usage.cpuSystemMicros, 150000u);
  EXPECT_GE(status.usage.peakMemoryBytes, uint64_t(96) << 20);
}

TEST(ReapExited, ThrowsForAProcessReapedAlready) {
  auto child = forkChild([]() { return 0; });
  reapExited(child.pidfd.get(), child.pid);
  auto exception = kj::runCatchingExceptions([&]() { reapExited(child.pidfd.get(), child.pid); });
  EXPECT_TRUE(exception != nullptr);
}

}  // namespace
}  // namespace runner::executors

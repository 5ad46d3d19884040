#include "executors/job-process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executors/spawn.h"

namespace runner::executors {
namespace {

// Forks a process that runs `child` and then waits to be killed; returns once `child` has run.
template <typename Func>
pid_t forkAndPause(Func&& child) {
  int ready[2];
  KJ_SYSCALL(pipe(ready));
  pid_t pid = fork();
  KJ_ASSERT(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    child();
    if (write(ready[1], "x", 1) != 1) _exit(2);
    for (;;) pause();
  }
  close(ready[1]);
  char byte;
  KJ_ASSERT(read(ready[0], &byte, 1) == 1, "the child did not get ready");
  close(ready[0]);
  return pid;
}

// Whether the process behind `pidfd` ends within 5 s.
bool endsSoon(int pidfd) {
  struct pollfd poller = {pidfd, POLLIN, 0};
  return poll(&poller, 1, 5000) == 1;
}

int pidfdOf(pid_t pid) {
  int fd = syscall(SYS_pidfd_open, pid, 0);
  KJ_ASSERT(fd >= 0, strerror(errno));
  return fd;
}

TEST(KillSessionOf, KillsTheSessionAndItsGroupsAndNothingElse) {
  // A leads a session, as spawn() makes a job's main process; B stays in its group, C makes a
  // group of its own in the same session. D is someone else.
  int pids[2];
  KJ_SYSCALL(pipe(pids));
  pid_t leader = forkAndPause([&]() {
    setsid();
    pid_t b = forkAndPause([]() {});
    pid_t c = forkAndPause([]() { setpgid(0, 0); });
    pid_t both[] = {b, c};
    if (write(pids[1], both, sizeof(both)) != sizeof(both)) _exit(2);
  });
  pid_t children[2];
  ASSERT_EQ(read(pids[0], children, sizeof(children)), ssize_t(sizeof(children)));
  close(pids[0]);
  close(pids[1]);
  pid_t outsider = forkAndPause([]() { setsid(); });
  KJ_DEFER({
    kill(outsider, SIGKILL);
    waitpid(outsider, nullptr, 0);
  });

  int childFds[] = {pidfdOf(children[0]), pidfdOf(children[1])};
  auto start = KJ_ASSERT_NONNULL(processStartTime(leader));
  EXPECT_EQ(killSessionOf(leader, start), 3u);
  int status;
  ASSERT_EQ(waitpid(leader, &status, 0), leader);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(endsSoon(childFds[0]));
  EXPECT_TRUE(endsSoon(childFds[1]));
  close(childFds[0]);
  close(childFds[1]);
  EXPECT_EQ(kill(outsider, 0), 0);
}

TEST(KillSessionOf, APidGivenToAnotherProcessIsLeftAlone) {
  pid_t other = forkAndPause([]() { setsid(); });
  auto start = KJ_ASSERT_NONNULL(processStartTime(other));
  // The record says the job's main process started at another time: this is not it.
  EXPECT_EQ(killSessionOf(other, start + 1), 0u);
  EXPECT_EQ(kill(other, 0), 0);
  kill(other, SIGKILL);
  waitpid(other, nullptr, 0);
}

TEST(IsUnreapedChild, OnlyAChildNotYetReapedThatStartedThen) {
  pid_t child = forkAndPause([]() {});
  auto start = KJ_ASSERT_NONNULL(processStartTime(child));
  EXPECT_TRUE(isUnreapedChild(child, start));
  EXPECT_FALSE(isUnreapedChild(child, start + 1));
  int fd = pidfdOf(child);
  kill(child, SIGKILL);
  ASSERT_TRUE(endsSoon(fd));
  close(fd);
  // Ended, not reaped: whoever watches it again reaps it.
  EXPECT_TRUE(isUnreapedChild(child, start));
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(isUnreapedChild(child, start));
  EXPECT_FALSE(isUnreapedChild(1, 0));
}

}  // namespace
}  // namespace runner::executors

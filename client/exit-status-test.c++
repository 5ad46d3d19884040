#include "client/exit-status.h"

#include <capnp/message.h>
#include <gtest/gtest.h>
#include <signal.h>

namespace runner {
namespace client {
namespace {

int exitCodeFor(api::State state, int exitCode, int termSignal) {
  capnp::MallocMessageBuilder message;
  auto info = message.initRoot<api::JobInfo>();
  info.setState(state);
  info.setExitCode(exitCode);
  info.setTermSignal(termSignal);
  return jobExitCode(info.asReader());
}

TEST(JobExitCode, ExitedJobsExitWithTheirOwnCode) {
  EXPECT_EQ(exitCodeFor(api::State::EXITED, 0, 0), 0);
  EXPECT_EQ(exitCodeFor(api::State::EXITED, 3, 0), 3);
  EXPECT_EQ(exitCodeFor(api::State::EXITED, 255, 0), 255);
}

TEST(JobExitCode, SignalsGive128PlusTheSignal) {
  EXPECT_EQ(exitCodeFor(api::State::KILLED, 0, SIGKILL), 137);
  EXPECT_EQ(exitCodeFor(api::State::KILLED, 0, SIGSEGV), 139);
  EXPECT_EQ(exitCodeFor(api::State::STOPPED, 0, SIGTERM), 143);
}

TEST(JobExitCode, AStoppedJobThatExitedByItselfKeepsItsCode) {
  EXPECT_EQ(exitCodeFor(api::State::STOPPED, 0, 0), 0);
  EXPECT_EQ(exitCodeFor(api::State::STOPPED, 7, 0), 7);
}

TEST(JobExitCode, FailedToStartIs127AndLostIs125) {
  EXPECT_EQ(exitCodeFor(api::State::FAILED, 0, 0), EXIT_CANNOT_START);
  EXPECT_EQ(EXIT_CANNOT_START, 127);
  EXPECT_EQ(exitCodeFor(api::State::LOST, 0, 0), EXIT_RUNCTL_FAILED);
  EXPECT_EQ(exitCodeFor(api::State::RUNNING, 0, 0), EXIT_RUNCTL_FAILED);
  EXPECT_EQ(EXIT_RUNCTL_FAILED, 125);
}

}  // namespace
}  // namespace client
}  // namespace runner

#include "client/job-format.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "client/test-printing.h"

namespace runner {
namespace client {
namespace {

class JobFormat : public testing::Test {
 protected:
  ~JobFormat() noexcept override {}

  void SetUp() override {
    // Times print in local time: make local time UTC for the test.
    setenv("TZ", "UTC", 1);
    tzset();
  }

  capnp::MallocMessageBuilder message;

  api::JobInfo::Builder exitedJob() {
    auto info = message.initRoot<api::JobInfo>();
    info.setId("0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
    info.setOwner("alice");
    info.setCommand("sh");
    auto args = info.initArgs(2);
    args.set(0, "-c");
    args.set(1, "echo 'hi'");
    info.setState(api::State::EXITED);
    info.setExitCode(3);
    info.setCreatedAt(1700000000000);
    info.setStartedAt(1700000000250);
    info.setEndedAt(1700000001500);
    info.getLimits().setCpuMillicores(500);
    info.getLimits().setMemoryBytes(64ull << 20);
    info.getLimits().setPids(10);
    info.getIsolation().setPid(true);
    info.setExecutor("cgroup");
    info.getUsage().setCpuUserMicros(12000);
    info.getUsage().setPeakMemoryBytes(3ull << 20);
    info.setOutputBytes(12);
    info.getCgroup().setVersion(2);
    info.getCgroup().setPath("runner/job-1");
    info.setUid(2000000007);
    info.setGid(2000000007);
    return info;
  }
};

TEST_F(JobFormat, StatusShowsEveryFactOnItsOwnLine) {
  auto status = formatStatus(exitedJob());
  for (auto line :
       {"ID:           0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b\n", "Owner:        alice\n",
        "State:        exited\n", "Exit code:    3\n", "Command:      sh -c 'echo '\\''hi'\\'''\n",
        "Created:      2023-11-14 22:13:20\n", "Ended:        2023-11-14 22:13:21 (ran 1.250s)\n",
        "User:         uid 2000000007, gid 2000000007\n",
        "Executor:     cgroup\n", "Limits:       cpu 0.5 cores, memory 64 MiB, pids 10\n",
        "Isolation:    pid namespaces\n", "Cgroup:       v2 runner/job-1\n",
        "CPU time:     user 0.012s, system 0.000s\n", "Peak memory:  3 MiB\n",
        "Output:       12 bytes\n", "OOM killed:   no\n"}) {
    EXPECT_TRUE(strstr(status.cStr(), line) != nullptr) << "missing " << line << " in\n"
                                                        << status.cStr();
  }
  EXPECT_TRUE(status.endsWith("\n"));
}

TEST_F(JobFormat, StatusOfAFailedJobShowsItsError) {
  auto info = exitedJob();
  info.setState(api::State::FAILED);
  info.setError("exec sh: No such file or directory");
  auto status = formatStatus(info);
  EXPECT_TRUE(strstr(status.cStr(), "Error:        exec sh: No such file or directory\n"));
  EXPECT_FALSE(strstr(status.cStr(), "Exit code:"));
}

TEST_F(JobFormat, OutcomeNamesTheSignal) {
  auto info = exitedJob();
  EXPECT_EQ(describeOutcome(info), "exited with code 3");
  info.setState(api::State::STOPPED);
  info.setTermSignal(SIGTERM);
  EXPECT_EQ(describeOutcome(info), "stopped by SIGTERM");
  info.setState(api::State::KILLED);
  info.setTermSignal(SIGKILL);
  info.setOomKilledMain(true);
  EXPECT_EQ(describeOutcome(info), "killed by SIGKILL (out of memory)");
  EXPECT_EQ(signalName(200), "signal 200");
}

TEST_F(JobFormat, TableAlignsColumnsWithoutTrailingBlanks) {
  capnp::MallocMessageBuilder listMessage;
  auto jobs = listMessage.initRoot<api::JobManager::ListResults>().initJobs(2);
  jobs.setWithCaveats(0, exitedJob());
  jobs[1].setId("short");
  jobs[1].setOwner("bob");
  jobs[1].setCommand("sleep");
  jobs[1].initArgs(1).set(0, "60");
  jobs[1].setState(api::State::RUNNING);
  auto table = formatJobTable(jobs.asReader());
  EXPECT_EQ(table,
            "ID                                    OWNER  STATE    EXIT  CREATED              "
            "COMMAND\n"
            "0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b  alice  exited   3     2023-11-14 22:13:20  "
            "sh -c 'echo '\\''hi'\\'''\n"
            "short                                 bob    running  -     -                    "
            "sleep 60\n");
}

TEST_F(JobFormat, JsonIsOneObjectThatDecodesBackToTheSameJob) {
  auto json = jobInfoJson(exitedJob());
  ASSERT_TRUE(json.endsWith("\n"));
  EXPECT_EQ(json.findFirst('\n'), json.size() - 1);
  EXPECT_TRUE(json.startsWith("{"));
  EXPECT_TRUE(strstr(json.cStr(), "\"state\":\"exited\""));

  capnp::MallocMessageBuilder decoded;
  capnp::JsonCodec().decode(json.slice(0, json.size() - 1), decoded.initRoot<api::JobInfo>());
  auto info = decoded.getRoot<api::JobInfo>().asReader();
  EXPECT_EQ(info.getId(), "0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(info.getExitCode(), 3);
  EXPECT_EQ(info.getLimits().getMemoryBytes(), 64ull << 20);
}

TEST_F(JobFormat, JsonListIsAnArray) {
  capnp::MallocMessageBuilder listMessage;
  auto jobs = listMessage.initRoot<api::JobManager::ListResults>().initJobs(2);
  jobs[0].setId("a");
  jobs[1].setId("b");
  auto json = jobListJson(jobs.asReader());
  EXPECT_TRUE(json.startsWith("[{\"id\":\"a\""));
  EXPECT_TRUE(json.endsWith("}]\n"));
  EXPECT_EQ(jobListJson(listMessage.initRoot<api::JobManager::ListResults>().initJobs(0)), "[]\n");
}

TEST(FormatNumbers, SizesCoresAndDurations) {
  EXPECT_EQ(formatSize(0), "0 B");
  EXPECT_EQ(formatSize(512), "512 B");
  EXPECT_EQ(formatSize(64ull << 20), "64 MiB");
  EXPECT_EQ(formatSize(3ull << 29), "1.5 GiB");
  EXPECT_EQ(formatSize(1000), "1000 B");
  EXPECT_EQ(formatSize(1025), "1 KiB");
  EXPECT_EQ(formatCores(500), "0.5");
  EXPECT_EQ(formatCores(2000), "2");
  EXPECT_EQ(formatCores(1250), "1.25");
  EXPECT_EQ(formatCores(1), "0.001");
  EXPECT_EQ(formatMillis(1250), "1.250s");
  EXPECT_EQ(formatMillis(123500), "2m03.500s");
  EXPECT_EQ(formatMillis(3723000), "1h02m03.000s");
  EXPECT_EQ(formatTime(0), "-");
}

}  // namespace
}  // namespace client
}  // namespace runner

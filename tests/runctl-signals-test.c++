// Signals, timeouts and live usage through a real runnerd and runctl: `runctl kill -s` reaches
// every process of a job, `--timeout` and `--idle-timeout` stop jobs and say so (also across a
// restart of runnerd), and `status` of a running job shows what it has used so far.

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <regex>
#include <string>

#include "certs/credential-files.h"
#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::RunctlOptions;
using testing::RunctlResult;
using testing::RunnerdFixture;

std::string trimmed(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

bool isOneLine(const std::string& text) {
  return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

// The number `key` has in a JobInfo's JSON (a 64-bit one is a JSON string), or -1.
int64_t jsonNumber(const std::string& json, const std::string& key) {
  std::smatch match;
  if (!std::regex_search(json, match, std::regex("\"" + key + "\":\"?(-?[0-9]+)"))) return -1;
  return std::stoll(match[1]);
}

std::string jsonText(const std::string& json, const std::string& key) {
  std::smatch match;
  if (!std::regex_search(json, match, std::regex("\"" + key + "\":\"([^\"]*)\""))) return "";
  return match[1];
}

int64_t monotonicMillis() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

class RunctlSignals : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::cannotRunServer() != nullptr) return;
    server = kj::heap<RunnerdFixture>();
  }

  static void TearDownTestSuite() { server = nullptr; }

  void SetUp() override {
    KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
      GTEST_SKIP() << reason->cStr();
    }
  }

  static RunctlResult runctl(kj::ArrayPtr<const kj::StringPtr> args,
                             const RunctlOptions& options = RunctlOptions()) {
    return testing::runctl(*server, args, options);
  }

  // Starts a job as `user`; returns its id.
  static std::string start(kj::ArrayPtr<const kj::StringPtr> args,
                           const RunctlOptions& options = RunctlOptions()) {
    auto started = runctl(args, options);
    KJ_ASSERT(started.status == 0, started.err, started.out);
    return trimmed(started.out);
  }

  // Waits (up to 10 s) until job `id`'s output holds every one of `texts`.
  static std::string waitForOutput(const std::string& id,
                                   std::initializer_list<const char*> texts) {
    auto path = kj::str(server->dir(), "/logs/", id.c_str(), ".log");
    std::string output;
    for (int i = 0; i < 1000; i++) {
      output = certs::readFile(path).cStr();
      bool all = true;
      for (auto text : texts) all = all && output.find(text) != std::string::npos;
      if (all) return output;
      usleep(10000);
    }
    ADD_FAILURE() << "output of " << id << " never held all it should: " << output;
    return output;
  }

  static kj::Own<RunnerdFixture> server;
};

kj::Own<RunnerdFixture> RunctlSignals::server;

TEST_F(RunctlSignals, KillSendsTheSignalToEveryProcessOfTheJob) {
  // A shell and a child shell, each with a trap: both must hear the signal.
  auto id = start({"start", "--", "sh", "-c",
                   "trap 'echo parent-got-usr1' USR1; "
                   "sh -c 'trap \"echo child-got-usr1; exit 0\" USR1; echo child-ready; "
                   "while :; do sleep 0.05; done' & "
                   "echo parent-ready; while :; do sleep 0.05; done"});
  waitForOutput(id, {"parent-ready", "child-ready"});

  auto killed = runctl({"kill", "-s", "USR1", id.c_str()});
  EXPECT_EQ(killed.status, 0) << killed.err;
  EXPECT_EQ(killed.out, id + "\n");
  EXPECT_EQ(killed.err, "");
  waitForOutput(id, {"parent-got-usr1", "child-got-usr1"});

  // Caught, so the job runs on.
  auto status = runctl({"status", "--json", id.c_str()});
  EXPECT_EQ(jsonText(status.out, "state"), "running") << status.out;

  // SIGUSR1 by number and with its SIG prefix, in lower case, are the same signal.
  EXPECT_EQ(runctl({"kill", "--signal", "sigusr1", id.c_str()}).status, 0);
  EXPECT_EQ(runctl({"kill", "-s", std::to_string(SIGUSR1).c_str(), id.c_str()}).status, 0);

  // The default is KILL: the job ends `killed` by it, with no end reason.
  auto killedHard = runctl({"kill", id.c_str()});
  EXPECT_EQ(killedHard.status, 0) << killedHard.err;
  auto waited = runctl({"wait", "--json", id.c_str()});
  EXPECT_EQ(waited.status, 128 + SIGKILL) << waited.err;
  EXPECT_EQ(jsonText(waited.out, "state"), "killed") << waited.out;
  EXPECT_EQ(jsonNumber(waited.out, "termSignal"), SIGKILL) << waited.out;
  EXPECT_EQ(jsonText(waited.out, "endReason"), "none") << waited.out;
}

TEST_F(RunctlSignals, KillOfSeveralJobsGoesOnPastOneItCannotSignal) {
  auto first = start({"start", "sleep", "60"});
  auto second = start({"start", "sleep", "60"});
  auto killed = runctl({"kill", "-s", "TERM", first.c_str(), "no-such-job", second.c_str()});
  EXPECT_EQ(killed.status, 1);
  EXPECT_EQ(killed.out, first + "\n" + second + "\n");
  EXPECT_TRUE(isOneLine(killed.err)) << killed.err;
  EXPECT_EQ(killed.err, "runctl: not found: job no-such-job\n");
  for (auto& id : {first, second}) {
    auto waited = runctl({"wait", "--json", id.c_str()});
    EXPECT_EQ(waited.status, 128 + SIGTERM) << waited.out;
    EXPECT_EQ(jsonText(waited.out, "state"), "killed") << waited.out;
  }
}

TEST_F(RunctlSignals, OnlyTheOwnerOrAnAdminMaySignalAJob) {
  auto id = start({"start", "sleep", "60"});
  RunctlOptions bob;
  bob.user = "bob";
  auto refused = runctl({"kill", "-s", "TERM", id.c_str()}, bob);
  EXPECT_EQ(refused.status, 1);
  EXPECT_TRUE(isOneLine(refused.err)) << refused.err;
  EXPECT_EQ(refused.err, "runctl: permission denied: only the owner of job " + id +
                             " or an admin may signal it\n");
  auto status = runctl({"status", "--json", id.c_str()});
  EXPECT_EQ(jsonText(status.out, "state"), "running") << status.out;

  RunctlOptions admin;
  admin.user = "admin";
  auto allowed = runctl({"kill", id.c_str()}, admin);
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  EXPECT_EQ(runctl({"wait", id.c_str()}).status, 128 + SIGKILL);
}

TEST_F(RunctlSignals, InvalidSignalsAndEndedJobsAreOneLineErrors) {
  auto id = start({"start", "sleep", "60"});

  // A name runctl does not know: a usage error.
  auto unknown = runctl({"kill", "-s", "FOO", id.c_str()});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(isOneLine(unknown.err)) << unknown.err;
  EXPECT_NE(unknown.err.find("expected a signal name or number"), std::string::npos) << unknown.err;

  // Numbers that are not signals: the server refuses them.
  for (auto number : {"0", "65", "999"}) {
    auto refused = runctl({"kill", "-s", number, id.c_str()});
    EXPECT_EQ(refused.status, 1) << number;
    EXPECT_TRUE(isOneLine(refused.err)) << refused.err;
    EXPECT_EQ(refused.err, std::string("runctl: invalid: ") + number +
                               " is not a signal; a signal is a number from 1 to " +
                               std::to_string(SIGRTMAX) +
                               " (or a name such as TERM, KILL or USR1)\n");
  }
  auto status = runctl({"status", "--json", id.c_str()});
  EXPECT_EQ(jsonText(status.out, "state"), "running") << status.out;

  EXPECT_EQ(runctl({"stop", "--grace", "0", id.c_str()}).status, 0);
  auto ended = runctl({"kill", "-s", "TERM", id.c_str()});
  EXPECT_EQ(ended.status, 1);
  EXPECT_TRUE(isOneLine(ended.err)) << ended.err;
  EXPECT_EQ(ended.err, "runctl: conflict: job " + id + " has ended\n");

  auto usage = runctl({"kill"});
  EXPECT_EQ(usage.status, 2);
  EXPECT_TRUE(isOneLine(usage.err)) << usage.err;
}

TEST_F(RunctlSignals, ATimeoutStopsTheJobAndStatusSaysSo) {
  auto begun = monotonicMillis();
  auto id = start({"start", "--timeout", "1s", "--", "sleep", "30"});
  auto waited = runctl({"wait", "--json", id.c_str()});
  auto took = monotonicMillis() - begun;
  EXPECT_EQ(waited.status, 128 + SIGTERM) << waited.err;
  EXPECT_GE(took, 1000);
  EXPECT_LT(took, 10000);
  EXPECT_EQ(jsonText(waited.out, "state"), "stopped") << waited.out;
  EXPECT_EQ(jsonText(waited.out, "endReason"), "timeout") << waited.out;
  EXPECT_EQ(jsonNumber(waited.out, "timeoutMillis"), 1000) << waited.out;

  auto status = runctl({"status", id.c_str()});
  EXPECT_NE(status.out.find("State:        stopped\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Ended by:     timeout (1.000s)\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Timeouts:     run 1.000s\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Error:        runnerd stopped the job: it ran longer than its "
                            "timeout of 1s\n"),
            std::string::npos)
      << status.out;

  // `run` and `wait` say on stderr why runnerd stopped the job, beside the exit status.
  EXPECT_NE(waited.err.find(kj::str("runctl: job ", id.c_str(),
                                    ": runnerd stopped the job: it ran longer than its timeout "
                                    "of 1s\n")
                                .cStr()),
            std::string::npos)
      << waited.err;
  auto ran = runctl({"run", "--timeout", "1s", "--", "sleep", "30"});
  EXPECT_EQ(ran.status, 128 + SIGTERM);
  EXPECT_NE(ran.err.find("ran longer than its timeout of 1s\n"), std::string::npos) << ran.err;

  // A job that ends in time keeps no reason; a user's stop says it was one.
  auto quick = start({"start", "--timeout", "30s", "--", "true"});
  auto quickEnd = runctl({"wait", "--json", quick.c_str()});
  EXPECT_EQ(quickEnd.status, 0);
  EXPECT_EQ(jsonText(quickEnd.out, "endReason"), "none") << quickEnd.out;
  auto stopped = start({"start", "--timeout", "30s", "--", "sleep", "30"});
  auto stop = runctl({"stop", stopped.c_str()});
  EXPECT_EQ(stop.out, stopped + " stopped by SIGTERM\n");
  auto stoppedStatus = runctl({"status", "--json", stopped.c_str()});
  EXPECT_EQ(jsonText(stoppedStatus.out, "endReason"), "stopped") << stoppedStatus.out;

  // `run` says which limit stopped the job.
  auto run = runctl({"run", "--timeout", "300ms", "--", "sleep", "30"});
  EXPECT_EQ(run.status, 128 + SIGTERM);

  auto bad = runctl({"start", "--timeout", "0", "--", "true"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_TRUE(isOneLine(bad.err)) << bad.err;
  auto tooLong = runctl({"start", "--timeout", "4000d", "--", "true"});
  EXPECT_EQ(tooLong.status, 1);
  EXPECT_TRUE(isOneLine(tooLong.err)) << tooLong.err;
  EXPECT_EQ(tooLong.err,
            "runctl: invalid: a timeout must be at most 316224000 seconds (10 years)\n");
}

TEST_F(RunctlSignals, AnIdleTimeoutStopsAJobThatStopsWritingButNotOneThatKeepsWriting) {
  auto idle = start({"start", "--idle-timeout", "1s", "--", "sh", "-c", "echo hello; sleep 30"});
  // Writes every 200 ms for 3 s: never idle for a second.
  auto busy = start({"start", "--idle-timeout", "1s", "--", "sh", "-c",
                     "i=0; while [ $i -lt 15 ]; do echo tick; sleep 0.2; i=$((i+1)); done"});

  auto idleEnd = runctl({"wait", "--json", idle.c_str()});
  EXPECT_EQ(idleEnd.status, 128 + SIGTERM) << idleEnd.err;
  EXPECT_EQ(jsonText(idleEnd.out, "state"), "stopped") << idleEnd.out;
  EXPECT_EQ(jsonText(idleEnd.out, "endReason"), "idleTimeout") << idleEnd.out;
  EXPECT_EQ(jsonNumber(idleEnd.out, "idleTimeoutMillis"), 1000) << idleEnd.out;
  auto ran = jsonNumber(idleEnd.out, "endedAtMillis") - jsonNumber(idleEnd.out, "startedAtMillis");
  EXPECT_GE(ran, 1000) << idleEnd.out;
  EXPECT_LT(ran, 5000) << idleEnd.out;
  auto status = runctl({"status", idle.c_str()});
  EXPECT_NE(status.out.find("Ended by:     idle timeout (no output for 1.000s)\n"),
            std::string::npos)
      << status.out;

  auto busyEnd = runctl({"wait", "--json", busy.c_str()});
  EXPECT_EQ(busyEnd.status, 0) << busyEnd.out;
  EXPECT_EQ(jsonText(busyEnd.out, "state"), "exited") << busyEnd.out;
  EXPECT_EQ(jsonText(busyEnd.out, "endReason"), "none") << busyEnd.out;
}

// A supervisor that does not answer (stopped here) leaves `status` answering, without the usage
// so far, after runnerd's deadline for it.
TEST_F(RunctlSignals, StatusAnswersWhileTheSupervisorDoesNot) {
  auto id = start({"start", "--", "sleep", "60"});
  auto pidText = certs::readFile(kj::str(server->dir(), "/state/supervisor.pid"));
  pid_t supervisor = atoi(pidText.cStr());
  ASSERT_GT(supervisor, 1) << pidText.cStr();
  ASSERT_EQ(kill(supervisor, SIGSTOP), 0);
  auto begun = monotonicMillis();
  auto json = runctl({"status", "--json", id.c_str()});
  auto took = monotonicMillis() - begun;
  ASSERT_EQ(kill(supervisor, SIGCONT), 0);
  EXPECT_EQ(json.status, 0) << json.err;
  EXPECT_EQ(jsonText(json.out, "state"), "running") << json.out;
  EXPECT_EQ(jsonNumber(json.out, "currentMemoryBytes"), 0) << json.out;
  EXPECT_GE(took, 900);
  EXPECT_LT(took, 10000);
  EXPECT_EQ(runctl({"stop", id.c_str()}).status, 0);
}

TEST_F(RunctlSignals, StatusOfARunningJobShowsItsUsageSoFar) {
  auto id = start({"start", "--", "sh", "-c", "while :; do :; done"});
  usleep(500000);
  auto json = runctl({"status", "--json", id.c_str()});
  EXPECT_EQ(json.status, 0) << json.err;
  EXPECT_EQ(jsonText(json.out, "state"), "running") << json.out;
  EXPECT_GT(jsonNumber(json.out, "cpuUserMicros") + jsonNumber(json.out, "cpuSystemMicros"), 100000)
      << json.out;
  EXPECT_GT(jsonNumber(json.out, "peakMemoryBytes"), 0) << json.out;
  EXPECT_GT(jsonNumber(json.out, "currentMemoryBytes"), 0) << json.out;

  auto status = runctl({"status", id.c_str()});
  EXPECT_EQ(status.out.find("CPU time:     user 0.000s, system 0.000s"), std::string::npos)
      << status.out;
  EXPECT_EQ(status.out.find("Peak memory:  -\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Memory now:   "), std::string::npos) << status.out;
  EXPECT_EQ(status.out.find("Memory now:   -\n"), std::string::npos) << status.out;

  EXPECT_EQ(runctl({"kill", id.c_str()}).status, 0);
  auto ended = runctl({"wait", "--json", id.c_str()});
  EXPECT_GT(jsonNumber(ended.out, "cpuUserMicros") + jsonNumber(ended.out, "cpuSystemMicros"),
            100000)
      << ended.out;
  EXPECT_EQ(jsonNumber(ended.out, "currentMemoryBytes"), 0) << ended.out;
  auto endedStatus = runctl({"status", id.c_str()});
  EXPECT_EQ(endedStatus.out.find("Memory now:"), std::string::npos) << endedStatus.out;
}

TEST_F(RunctlSignals, StatusOfARunningCgroupJobShowsItsCountersSoFar) {
  auto started = runctl({"start", "--executor", "cgroup", "--", "sh", "-c",
                         "x=$(head -c 8388608 /dev/zero | tr '\\0' a); while :; do :; done"});
  if (started.status != 0) GTEST_SKIP() << "no cgroup executor here: " << started.err;
  auto id = trimmed(started.out);
  usleep(700000);
  auto json = runctl({"status", "--json", id.c_str()});
  EXPECT_EQ(jsonText(json.out, "state"), "running") << json.out;
  EXPECT_GT(jsonNumber(json.out, "cpuUserMicros") + jsonNumber(json.out, "cpuSystemMicros"), 100000)
      << json.out;
  EXPECT_GT(jsonNumber(json.out, "peakMemoryBytes"), 8 << 20) << json.out;
  EXPECT_GT(jsonNumber(json.out, "currentMemoryBytes"), 0) << json.out;
  EXPECT_EQ(runctl({"kill", id.c_str()}).status, 0);
  auto ended = runctl({"wait", "--json", id.c_str()});
  EXPECT_EQ(jsonText(ended.out, "state"), "killed") << ended.out;
  EXPECT_EQ(jsonNumber(ended.out, "currentMemoryBytes"), 0) << ended.out;
}

TEST_F(RunctlSignals, ThePeakMemoryOfALocalJobIsItsOwn) {
  auto id = start({"start", "--executor", "local", "--", "true"});
  auto ended = runctl({"wait", "--json", id.c_str()});
  EXPECT_EQ(ended.status, 0) << ended.err;
  auto peak = jsonNumber(ended.out, "peakMemoryBytes");
  EXPECT_GE(peak, 0) << ended.out;
  EXPECT_LT(peak, 5 << 20) << ended.out;

  // Below the supervisor's own peak the rusage cannot tell the job's; what status read of the
  // job's processes while it ran is kept.
  auto small = start({"start", "--executor", "local", "--", "sleep", "1"});
  auto live = runctl({"status", "--json", small.c_str()});
  auto livePeak = jsonNumber(live.out, "peakMemoryBytes");
  EXPECT_GT(livePeak, 0) << live.out;
  EXPECT_LT(livePeak, 5 << 20) << live.out;
  auto smallEnd = runctl({"wait", "--json", small.c_str()});
  EXPECT_EQ(smallEnd.status, 0) << smallEnd.err;
  EXPECT_GE(jsonNumber(smallEnd.out, "peakMemoryBytes"), livePeak) << smallEnd.out;
  EXPECT_LT(jsonNumber(smallEnd.out, "peakMemoryBytes"), 5 << 20) << smallEnd.out;

  // A job that takes 64 MiB shows it.
  auto big = start({"start", "--executor", "local", "--", "sh", "-c",
                    "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}"});
  auto bigEnd = runctl({"wait", "--json", big.c_str()});
  EXPECT_EQ(bigEnd.status, 0) << bigEnd.err;
  EXPECT_GT(jsonNumber(bigEnd.out, "peakMemoryBytes"), 64 << 20) << bigEnd.out;
}

// Its own runnerd, which crashes and comes back while the jobs run.
TEST(RunctlTimeoutsAcrossRestarts, TimeoutsSurviveARestartOfRunnerd) {
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
    GTEST_SKIP() << reason->cStr();
  }
  RunnerdFixture f;
  if (f.supervisorPid() == 0) GTEST_SKIP() << "jobs outlive runnerd only with its supervisor";
  auto startJob = [&](kj::ArrayPtr<const kj::StringPtr> args) {
    auto started = testing::runctl(f, args);
    KJ_ASSERT(started.status == 0, started.err);
    return trimmed(started.out);
  };
  auto timed = startJob({"start", "--timeout", "6s", "--", "sleep", "60"});
  auto idle = startJob({"start", "--idle-timeout", "4s", "--", "sh", "-c", "echo once; sleep 60"});

  f.crash();
  sleep(3);
  f.start();

  auto timedEnd = testing::runctl(f, {"wait", "--json", timed.c_str()});
  EXPECT_EQ(jsonText(timedEnd.out, "state"), "stopped") << timedEnd.out;
  EXPECT_EQ(jsonText(timedEnd.out, "endReason"), "timeout") << timedEnd.out;
  // Counted from the job's start, not from runnerd's: 3 s away would make it 9 s and more.
  auto ran =
      jsonNumber(timedEnd.out, "endedAtMillis") - jsonNumber(timedEnd.out, "startedAtMillis");
  EXPECT_GE(ran, 6000) << timedEnd.out;
  EXPECT_LT(ran, 8500) << timedEnd.out;

  auto idleEnd = testing::runctl(f, {"wait", "--json", idle.c_str()});
  EXPECT_EQ(jsonText(idleEnd.out, "state"), "stopped") << idleEnd.out;
  EXPECT_EQ(jsonText(idleEnd.out, "endReason"), "idleTimeout") << idleEnd.out;
  ran = jsonNumber(idleEnd.out, "endedAtMillis") - jsonNumber(idleEnd.out, "startedAtMillis");
  EXPECT_GE(ran, 4000) << idleEnd.out;
  EXPECT_LT(ran, 6500) << idleEnd.out;
}

}  // namespace
}  // namespace runner

// Output by time through a real runnerd and runctl: `logs --tail`, `--since`, `--until` and
// `-t`, alone, together and with -f; the times survive a restart of runnerd; the index runnerd
// keeps of them stays small however a job writes.

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "certs/credential-files.h"
#include "client/job-format.h"
#include "client/log-lines.h"
#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::RunctlOptions;
using testing::RunctlProcess;
using testing::RunctlResult;
using testing::RunnerdFixture;

std::string trimmed(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

bool isOneLine(const std::string& text) {
  return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

int64_t jsonNumber(const std::string& json, const std::string& key) {
  std::smatch match;
  if (!std::regex_search(json, match, std::regex("\"" + key + "\":\"?(-?[0-9]+)"))) return -1;
  return std::stoll(match[1]);
}

int64_t wallMillis() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

// A line of `logs -t`: its time and what the job wrote.
struct TimedLine {
  int64_t millis;
  std::string text;
};

// Splits `logs -t` output into lines; fails the test on a line without a well-formed prefix
// (RFC 3339 in UTC with exactly three decimals, then a space).
std::vector<TimedLine> timedLines(const std::string& out) {
  std::vector<TimedLine> lines;
  std::regex prefix("^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z) (.*)$");
  size_t pos = 0;
  while (pos < out.size()) {
    size_t newline = out.find('\n', pos);
    std::string line = out.substr(pos, newline == std::string::npos ? newline : newline - pos);
    pos = newline == std::string::npos ? out.size() : newline + 1;
    std::smatch match;
    if (!std::regex_match(line, match, prefix)) {
      ADD_FAILURE() << "not a timestamped line: " << line;
      continue;
    }
    int64_t millis = -1;
    KJ_IF_MAYBE (t, client::parseLogTime(kj::StringPtr(match[1].str().c_str()), 0)) {
      millis = *t;
    }
    lines.push_back({millis, match[2]});
  }
  return lines;
}

std::string rfc3339(int64_t millis) {
  KJ_IF_MAYBE (text, client::formatRfc3339(millis)) {
    return text->cStr();
  }
  return "";
}

class RunctlLogs : public ::testing::Test {
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

  static std::string start(kj::ArrayPtr<const kj::StringPtr> args) {
    auto started = runctl(args);
    KJ_ASSERT(started.status == 0, started.err, started.out);
    return trimmed(started.out);
  }

  // Runs a shell script as a job to its end; returns its id, and its JSON once ended.
  static std::string runToEnd(const char* script, std::string* json = nullptr) {
    auto id = start({"start", "--", "sh", "-c", script});
    auto ended = runctl({"wait", "--json", id.c_str()});
    KJ_ASSERT(ended.status == 0, ended.err, ended.out);
    if (json != nullptr) *json = ended.out;
    return id;
  }

  static std::string logs(std::initializer_list<kj::StringPtr> options, const std::string& id) {
    std::vector<kj::StringPtr> args = {"logs"};
    args.insert(args.end(), options.begin(), options.end());
    args.push_back(id.c_str());
    auto result = runctl(kj::arrayPtr(args.data(), args.size()));
    EXPECT_EQ(result.status, 0) << result.err;
    EXPECT_EQ(result.err, "");
    return result.out;
  }

  static void waitForOutput(const std::string& id, const char* text) {
    auto path = kj::str(server->dir(), "/logs/", id.c_str(), ".log");
    for (int i = 0; i < 1000; i++) {
      if (std::string(certs::readFile(path).cStr()).find(text) != std::string::npos) return;
      usleep(10000);
    }
    ADD_FAILURE() << "output of " << id << " never held " << text;
  }

  static kj::Own<RunnerdFixture> server;
};

kj::Own<RunnerdFixture> RunctlLogs::server;

TEST_F(RunctlLogs, TailGivesTheLastLines) {
  auto id = runToEnd("printf 'l1\\nl2\\nl3\\nl4\\nl5\\n'");
  EXPECT_EQ(logs({"--tail", "2"}, id), "l4\nl5\n");
  EXPECT_EQ(logs({"--tail=1"}, id), "l5\n");
  EXPECT_EQ(logs({"--tail", "0"}, id), "");
  EXPECT_EQ(logs({"--tail", "5"}, id), "l1\nl2\nl3\nl4\nl5\n");
  EXPECT_EQ(logs({"--tail", "99"}, id), "l1\nl2\nl3\nl4\nl5\n");

  // The last line need not end with a newline; an empty output has no lines.
  auto partial = runToEnd("printf 'a\\nb\\nc'");
  EXPECT_EQ(logs({"--tail", "2"}, partial), "b\nc");
  EXPECT_EQ(logs({"--tail", "1", "-t"}, partial).substr(25), "c");
  auto empty = runToEnd("true");
  EXPECT_EQ(logs({"--tail", "3"}, empty), "");

  // Lines spread over many windows read backwards (1.3 MB of output).
  auto big = runToEnd("seq 1 200000");
  auto last = logs({"--tail", "150000"}, big);
  EXPECT_EQ(last.substr(0, 6), "50001\n");
  EXPECT_EQ(std::count(last.begin(), last.end(), '\n'), 150000);
  EXPECT_EQ(logs({"--tail", "3"}, big), "199998\n199999\n200000\n");
}

TEST_F(RunctlLogs, TimestampsAreWhenEachLineArrived) {
  std::string json;
  auto id = runToEnd("for i in 1 2 3 4; do echo line$i; sleep 0.3; done", &json);
  int64_t startedAt = jsonNumber(json, "startedAtMillis");
  int64_t endedAt = jsonNumber(json, "endedAtMillis");
  auto lines = timedLines(logs({"-t"}, id));
  ASSERT_EQ(lines.size(), 4u);
  for (size_t i = 0; i < lines.size(); i++) {
    EXPECT_EQ(lines[i].text, "line" + std::to_string(i + 1));
    EXPECT_GE(lines[i].millis, startedAt);
    EXPECT_LE(lines[i].millis, endedAt);
    // 300 ms apart; the times are within 100 ms of the truth.
    if (i > 0) {
      EXPECT_GE(lines[i].millis - lines[i - 1].millis, 150) << i;
    }
  }
  // The long form says the same; without options the bytes are the job's.
  EXPECT_EQ(logs({"--timestamps"}, id), logs({"-t"}, id));
  EXPECT_EQ(logs({}, id), "line1\nline2\nline3\nline4\n");
}

TEST_F(RunctlLogs, SinceAndUntilSelectLinesByTime) {
  auto id = runToEnd("for i in 1 2 3 4; do echo line$i; sleep 0.3; done");
  auto lines = timedLines(logs({"-t"}, id));
  ASSERT_EQ(lines.size(), 4u);
  auto t2 = rfc3339(lines[1].millis);
  auto t3 = rfc3339(lines[2].millis);
  EXPECT_EQ(logs({"--since", t2.c_str()}, id), "line2\nline3\nline4\n");
  EXPECT_EQ(logs({"--until", t2.c_str()}, id), "line1\nline2\n");
  EXPECT_EQ(logs({"--since", t2.c_str(), "--until", t3.c_str()}, id), "line2\nline3\n");
  EXPECT_EQ(logs({"--since", t2.c_str(), "--tail", "1"}, id), "line4\n");
  EXPECT_EQ(logs({"--since", t3.c_str(), "--tail", "5"}, id), "line3\nline4\n");
  // In another zone's notation, the same instant.
  int hour = std::stoi(t3.substr(11, 2));
  auto plusOne = t3.substr(0, 11) + (hour < 9 ? "0" : "") + std::to_string(hour + 1) +
                 t3.substr(13, 10) + "+01:00";
  if (hour < 23) {
    EXPECT_EQ(logs({"--since", plusOne.c_str()}, id), "line3\nline4\n");
  }
  // Durations ago.
  EXPECT_EQ(logs({"--since", "1h"}, id), "line1\nline2\nline3\nline4\n");
  EXPECT_EQ(logs({"--until", "1h"}, id), "");
  auto future = rfc3339(wallMillis() + 3600000);
  EXPECT_EQ(logs({"--since", future.c_str()}, id), "");

  auto gap = runToEnd("echo early; sleep 3; echo late");
  EXPECT_EQ(logs({"--since", "1.5s"}, gap), "late\n");
  EXPECT_EQ(logs({"--until", "1.5s"}, gap), "early\n");
}

TEST_F(RunctlLogs, FollowWorksWithTailSinceAndTimestamps) {
  auto id = start(
      {"start", "--", "sh", "-c", "echo a; echo b; echo c; sleep 1.5; echo d; sleep 0.5; echo e"});
  waitForOutput(id, "c\n");
  // Once c has surely been noted: lines from now on.
  usleep(300000);
  RunctlProcess tail(*server, {"logs", "-f", "--tail", "1", id.c_str()});
  RunctlProcess since(*server, {"logs", "-f", "--since", "0s", id.c_str()});
  RunctlProcess stamped(*server, {"logs", "-f", "-t", id.c_str()});
  auto tailed = tail.finish();
  EXPECT_EQ(tailed.status, 0) << tailed.err;
  EXPECT_EQ(tailed.out, "c\nd\ne\n");
  auto sinced = since.finish();
  EXPECT_EQ(sinced.status, 0) << sinced.err;
  EXPECT_EQ(sinced.out, "d\ne\n");
  auto stamps = stamped.finish();
  EXPECT_EQ(stamps.status, 0) << stamps.err;
  auto lines = timedLines(stamps.out);
  ASSERT_EQ(lines.size(), 5u) << stamps.out;
  EXPECT_EQ(lines[3].text, "d");
  EXPECT_GE(lines[3].millis - lines[2].millis, 1000);
  EXPECT_GE(lines[4].millis - lines[3].millis, 300);
  // Followed and read afterwards, the times agree.
  EXPECT_EQ(logs({"-t"}, id), stamps.out);

  // --until with -f stops at the first later line, not at the job's end.
  auto slow = start({"start", "--", "sh", "-c", "echo one; sleep 1; echo two; sleep 60"});
  waitForOutput(slow, "one\n");
  usleep(300000);
  auto until = rfc3339(wallMillis());
  int64_t before = wallMillis();
  auto stopped = runctl({"logs", "-f", "--until", until.c_str(), slow.c_str()});
  EXPECT_EQ(stopped.status, 0) << stopped.err;
  EXPECT_EQ(stopped.out, "one\n");
  EXPECT_LT(wallMillis() - before, 10000);
  runctl({"stop", "--grace", "0", slow.c_str()});
}

TEST_F(RunctlLogs, BadTimesAndCountsAreUsageErrors) {
  auto id = runToEnd("echo x");
  for (auto args :
       std::vector<std::vector<kj::StringPtr>>{{"logs", "--tail", "x", id.c_str()},
                                               {"logs", "--tail", "-1", id.c_str()},
                                               {"logs", "--since", "yesterday", id.c_str()},
                                               {"logs", "--until", "", id.c_str()}}) {
    auto result = runctl(kj::arrayPtr(args.data(), args.size()));
    EXPECT_EQ(result.status, 2) << args[2].cStr();
    EXPECT_TRUE(isOneLine(result.err)) << result.err;
    EXPECT_EQ(result.out, "");
  }
  // Another user may not read the job's output, nor when it arrived.
  auto denied = runctl({"logs", "-t", id.c_str()}, RunctlOptions{"bob"});
  EXPECT_EQ(denied.status, 1);
  EXPECT_TRUE(isOneLine(denied.err)) << denied.err;
  EXPECT_NE(denied.err.find("permission denied"), std::string::npos) << denied.err;
}

TEST_F(RunctlLogs, TheIndexStaysSmallForManySmallWrites) {
  // 20,000 writes of a few bytes each.
  auto id = runToEnd("i=0; while [ $i -lt 20000 ]; do echo $i; i=$((i+1)); done");
  auto client = server->connect("alice");
  auto request = client->manager.getRequest();
  request.setId(id.c_str());
  auto job = request.send().getJob();
  auto info = job.infoRequest().send().wait(server->io.waitScope);
  auto times = job.outputTimesRequest().send().wait(server->io.waitScope);
  auto samples = times.getSamples();
  auto jobInfo = info.getInfo();
  int64_t ran = jobInfo.getEndedAt() - jobInfo.getStartedAt();
  ASSERT_GT(samples.size(), 0u);
  // One sample per 100 ms at most (and one for the end).
  EXPECT_LE(samples.size(), size_t(ran / 100 + 2)) << ran;
  EXPECT_LE(samples.size(), 4096u);
  for (size_t i = 1; i < samples.size(); i++) {
    EXPECT_GT(samples[i].getOffset(), samples[i - 1].getOffset());
    EXPECT_GE(samples[i].getTimeMillis(), samples[i - 1].getTimeMillis());
  }
  EXPECT_EQ(samples[samples.size() - 1].getOffset(), jobInfo.getOutputBytes());
  // Every line is there and timestamped.
  auto stamped = logs({"-t"}, id);
  EXPECT_EQ(std::count(stamped.begin(), stamped.end(), '\n'), 20000);
}

// Its own runnerd, stopped and started again (and crashed, with a job running across it).
TEST(RunctlLogsAcrossRestarts, TimesOfEndedJobsSurviveARestart) {
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
    GTEST_SKIP() << reason->cStr();
  }
  RunnerdFixture f;
  auto startJob = [&](kj::ArrayPtr<const kj::StringPtr> args) {
    auto started = testing::runctl(f, args);
    KJ_ASSERT(started.status == 0, started.err);
    return trimmed(started.out);
  };
  auto id = startJob({"start", "--", "sh", "-c", "echo one; sleep 0.3; echo two"});
  auto ended = testing::runctl(f, {"wait", id.c_str()});
  ASSERT_EQ(ended.status, 0) << ended.err;
  auto before = testing::runctl(f, {"logs", "-t", id.c_str()});
  ASSERT_EQ(timedLines(before.out).size(), 2u) << before.out;

  f.stop();
  f.start();
  auto after = testing::runctl(f, {"logs", "-t", id.c_str()});
  EXPECT_EQ(after.status, 0) << after.err;
  EXPECT_EQ(after.out, before.out);

  if (f.supervisorPid() == 0) return;
  // Running across a crash: what it wrote before keeps a time no later than the restart.
  std::string json;
  auto across = startJob({"start", "--", "sh", "-c", "echo before; sleep 3; echo after"});
  usleep(500000);
  f.crash();
  int64_t crashedAt = wallMillis();
  sleep(1);
  f.start();
  auto done = testing::runctl(f, {"wait", "--json", across.c_str()});
  ASSERT_EQ(done.status, 0) << done.err;
  auto lines = timedLines(testing::runctl(f, {"logs", "-t", across.c_str()}).out);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text, "before");
  EXPECT_GE(lines[0].millis, jsonNumber(done.out, "startedAtMillis"));
  EXPECT_LE(lines[0].millis, crashedAt);
  EXPECT_EQ(lines[1].text, "after");
  EXPECT_GE(lines[1].millis - lines[0].millis, 2000);
  EXPECT_LE(lines[1].millis, jsonNumber(done.out, "endedAtMillis"));
}

}  // namespace
}  // namespace runner

#include "client/job-format.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/test-printing.h"

namespace runner {
namespace client {
namespace {

// Whether a terminal would act on anything in `text` other than the newlines that end its lines:
// a C0 control, DEL, a C1 control in UTF-8 or a byte 0x80-0x9f that is not part of a character.
bool drivesTheTerminal(kj::StringPtr text) {
  for (size_t i = 0; i < text.size(); i++) {
    auto byte = static_cast<uint8_t>(text[i]);
    if (byte == '\n') continue;
    if (byte < 0x20 || byte == 0x7f) return true;
    if (byte == 0xc2 && i + 1 < text.size() && static_cast<uint8_t>(text[i + 1]) <= 0x9f) {
      return true;
    }
    if (byte >= 0x80 && byte <= 0x9f && (i == 0 || static_cast<uint8_t>(text[i - 1]) < 0xc2)) {
      return true;
    }
  }
  return false;
}

size_t lineCount(kj::StringPtr text) {
  size_t count = 0;
  for (char c : text) count += c == '\n';
  return count;
}

// What `bash -c SCRIPT` writes to stdout, in a UTF-8 locale (where bash reads $'\uHHHH').
kj::String bashOutput(kj::StringPtr script) {
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
  kj::AutoCloseFd readEnd(fds[0]);
  kj::AutoCloseFd writeEnd(fds[1]);
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    dup2(writeEnd.get(), STDOUT_FILENO);
    const char* environment[] = {"LC_ALL=C.UTF-8", "PATH=/usr/bin:/bin", nullptr};
    execle("/bin/bash", "bash", "-c", script.cStr(), nullptr, environment);
    _exit(127);
  }
  writeEnd = nullptr;
  auto output = kj::FdInputStream(readEnd.get()).readAllText();
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, script, status);
  return output;
}

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
        "User:         uid 2000000007, gid 2000000007\n", "Executor:     cgroup\n",
        "Limits:       cpu 0.5 cores, memory 64 MiB, pids 10\n", "Isolation:    pid namespaces\n",
        "Cgroup:       v2 runner/job-1\n", "CPU time:     user 0.012s, system 0.000s\n",
        "Peak memory:  3 MiB\n", "Output:       12 bytes\n", "OOM killed:   no\n"}) {
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

TEST_F(JobFormat, StatusSaysWhichTimeoutEndedAJob) {
  auto info = exitedJob();
  info.setState(api::State::STOPPED);
  info.setTermSignal(SIGTERM);
  info.setTimeoutMillis(90000);
  info.setIdleTimeoutMillis(1500);
  info.setEndReason(api::EndReason::IDLE_TIMEOUT);
  auto status = formatStatus(info);
  EXPECT_TRUE(strstr(status.cStr(), "Ended by:     idle timeout (no output for 1.500s)\n"))
      << status.cStr();
  EXPECT_TRUE(strstr(status.cStr(), "Timeouts:     run 1m30.000s, idle 1.500s\n")) << status.cStr();
  EXPECT_EQ(describeOutcome(info), "stopped by SIGTERM (idle timeout)");
  info.setEndReason(api::EndReason::TIMEOUT);
  EXPECT_TRUE(strstr(formatStatus(info).cStr(), "Ended by:     timeout (1m30.000s)\n"));
  EXPECT_EQ(describeOutcome(info), "stopped by SIGTERM (timeout)");
  info.setEndReason(api::EndReason::STOPPED);
  EXPECT_EQ(describeOutcome(info), "stopped by SIGTERM");
  EXPECT_TRUE(strstr(formatStatus(info).cStr(), "Ended by:     stop\n"));

  // Neither line for a job without timeouts that was not stopped.
  auto plain = formatStatus(exitedJob());
  EXPECT_FALSE(strstr(plain.cStr(), "Ended by:"));
  EXPECT_FALSE(strstr(plain.cStr(), "Timeouts:"));
}

TEST_F(JobFormat, StatusOfARunningJobShowsItsMemoryNow) {
  auto info = exitedJob();
  info.setState(api::State::RUNNING);
  info.getUsage().setCurrentMemoryBytes(3 << 20);
  EXPECT_TRUE(strstr(formatStatus(info).cStr(), "Memory now:   3 MiB\n"));
  info.getUsage().setCurrentMemoryBytes(0);
  EXPECT_TRUE(strstr(formatStatus(info).cStr(), "Memory now:   -\n"));
  EXPECT_FALSE(strstr(formatStatus(exitedJob()).cStr(), "Memory now:"));
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

TEST_F(JobFormat, TableEscapesWhatCouldForgeARowOrDriveTheTerminal) {
  capnp::MallocMessageBuilder listMessage;
  auto jobs = listMessage.initRoot<api::JobManager::ListResults>().initJobs(3);
  jobs.setWithCaveats(0, exitedJob());
  // A command that prints like another row of the table.
  jobs[1].setId("id-2");
  jobs[1].setOwner("mallory");
  jobs[1].setCommand("sh");
  auto args = jobs[1].initArgs(2);
  args.set(0, "-c");
  args.set(1, "true\r0b7e4f3a  alice    exited   0     2023-11-14 22:13:20  rm -rf ~");
  jobs[1].setState(api::State::RUNNING);
  // Escape sequences, a C1 CSI in UTF-8 and as a byte of its own, DEL.
  jobs[2].setId("id-3\x1b[8m");
  jobs[2].setOwner("eve\n");
  jobs[2].setCommand("\x1b]0;owned\x07printf");
  args = jobs[2].initArgs(3);
  args.set(0, "\u009b2J");
  args.set(1, "\x9b[2J\x7f");
  args.set(2, "it's\tok");
  jobs[2].setState(api::State::RUNNING);

  auto table = formatJobTable(jobs.asReader());
  EXPECT_FALSE(drivesTheTerminal(table)) << table.cStr();
  EXPECT_EQ(lineCount(table), 4u);
  EXPECT_EQ(table,
            "ID                                    OWNER    STATE    EXIT  CREATED              "
            "COMMAND\n"
            "0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b  alice    exited   3     2023-11-14 22:13:20  "
            "sh -c 'echo '\\''hi'\\'''\n"
            "id-2                                  mallory  running  -     -                    "
            "sh -c $'true\\r0b7e4f3a  alice    exited   0     2023-11-14 22:13:20  rm -rf ~'\n"
            "id-3\\e[8m                             eve\\n    running  -     -                    "
            "$'\\e]0;owned\\x07printf' $'\\u009b2J' $'\\x9b[2J\\x7f' $'it\\'s\\tok'\n");
}

TEST_F(JobFormat, TableColumnsAreAsWideAsTheirEscapedCharacters) {
  capnp::MallocMessageBuilder listMessage;
  auto jobs = listMessage.initRoot<api::JobManager::ListResults>().initJobs(3);
  jobs[0].setId("a");
  jobs[0].setOwner("Jos\u00e9");  // 5 bytes, 4 characters
  jobs[0].setCommand("true");
  jobs[1].setId("b");
  jobs[1].setOwner("\u65e5\u672c\u8a9e\u5b57");  // 12 bytes, 4 characters
  jobs[1].setCommand("true");
  jobs[2].setId("c");
  jobs[2].setOwner("ab\x1b");  // shown as "ab\e": 4 characters
  jobs[2].setCommand("true");
  auto table = formatJobTable(jobs.asReader());
  EXPECT_EQ(table,
            "ID  OWNER  STATE    EXIT  CREATED  COMMAND\n"
            "a   Jos\u00e9   running  -     -        true\n"
            "b   \u65e5\u672c\u8a9e\u5b57   running  -     -        true\n"
            "c   ab\\e   running  -     -        true\n");
}

TEST_F(JobFormat, StatusEscapesEveryTextFieldFromTheServer) {
  auto info = exitedJob();
  auto plainLines = lineCount(formatStatus(info));
  info.setId("id\x1b[8m");
  info.setOwner("eve\r");
  info.setState(api::State::FAILED);
  info.setError("exec \x1b]0;owned\x07: No such file or directory\nState:        exited");
  info.setWorkingDir("/tmp/\x9b");
  info.setExecutor("local\u009b");
  info.getCgroup().setPath("runner/\x1b[1m");
  info.getCgroup().setIoDevice("8:0\n");
  info.setCommand("sh");
  auto args = info.initArgs(2);
  args.set(0, "-c");
  args.set(1, "echo a\necho 'b' \\n");

  auto status = formatStatus(info);
  EXPECT_FALSE(drivesTheTerminal(status)) << status.cStr();
  // The exit code's line goes (the job failed); the error's and the working directory's come.
  EXPECT_EQ(lineCount(status), plainLines + 1) << status.cStr();
  for (auto line : {"ID:           id\\e[8m\n", "Owner:        eve\\r\n",
                    "Error:        exec \\e]0;owned\\x07: No such file or directory\\nState:"
                    "        exited\n",
                    "Working dir:  /tmp/\\x9b\n", "Executor:     local\\u009b\n",
                    "Cgroup:       v2 runner/\\e[1m, io limits on 8:0\\n\n",
                    "Command:      sh -c $'echo a\\necho \\'b\\' \\\\n'\n"}) {
    EXPECT_TRUE(strstr(status.cStr(), line) != nullptr) << "missing " << line << " in\n"
                                                        << status.cStr();
  }
}

TEST_F(JobFormat, OutcomeEscapesTheError) {
  auto info = exitedJob();
  info.setState(api::State::FAILED);
  info.setError("exec x: No such file\n\x1b[2J");
  EXPECT_EQ(describeOutcome(info), "failed: exec x: No such file\\n\\e[2J");
  info.setState(api::State::LOST);
  info.setError("runnerd restarted\r");
  EXPECT_EQ(describeOutcome(info), "lost: runnerd restarted\\r");
}

TEST_F(JobFormat, TheCommandLineReadsBackInBashAsTheSameWords) {
  kj::StringPtr words[] = {
      "%s\\0",  // printf's format: each word, then a NUL
      "plain",
      "echo a\necho 'b'",
      "\x1b[31mred\x1b[0m",
      "tab\there\r",
      "C:\\dir\\new",
      "a\\nb and a\nb",
      "\xff\xfe\x80",
      "\u009b2J",
      "Jos\u00e9",
      "right-to-left \u202e override",
      "it's",
      "",
  };
  capnp::MallocMessageBuilder message;
  auto args = message.initRoot<api::JobInfo>().initArgs(kj::size(words));
  for (size_t i = 0; i < kj::size(words); i++) args.set(i, words[i]);
  auto line = formatCommandLine("printf", args.asReader());
  EXPECT_FALSE(drivesTheTerminal(line)) << line.cStr();

  auto output = bashOutput(line);
  kj::Vector<kj::String> printed;
  size_t start = 0;
  for (size_t i = 0; i < output.size(); i++) {
    if (output[i] == '\0') {
      printed.add(kj::heapString(output.slice(start, i)));
      start = i + 1;
    }
  }
  // printf reuses its format for each remaining word.
  ASSERT_EQ(printed.size(), kj::size(words) - 1) << line.cStr();
  for (size_t i = 1; i < kj::size(words); i++) EXPECT_EQ(printed[i - 1], words[i]) << line.cStr();
}

TEST_F(JobFormat, JsonIsLeftToJsonsOwnEscaping) {
  auto info = exitedJob();
  info.setOwner("eve\r");
  info.setError("\x1b[2J\n");
  info.initArgs(1).set(0, "a\tb");
  auto json = jobInfoJson(info);
  // JSON escapes what is below 0x20 itself (and not as runctl's other output does); the one
  // newline ends the object.
  EXPECT_EQ(json.findFirst('\n'), json.size() - 1);
  EXPECT_TRUE(json.findFirst('\x1b') == nullptr);
  for (auto field :
       {"\"owner\":\"eve\\r\"", "\"error\":\"\\u001b[2J\\n\"", "\"args\":[\"a\\tb\"]"}) {
    EXPECT_TRUE(strstr(json.cStr(), field) != nullptr) << field << " not in " << json.cStr();
  }
}

TEST_F(JobFormat, JsonIsOneObjectThatDecodesBackToTheSameJob) {
  auto json = jobInfoJson(exitedJob());
  ASSERT_TRUE(json.endsWith("\n"));
  EXPECT_EQ(json.findFirst('\n'), json.size() - 1);
  EXPECT_TRUE(json.startsWith("{"));
  EXPECT_TRUE(strstr(json.cStr(), "\"state\":\"exited\""));

  capnp::MallocMessageBuilder decoded;
  decodeJobInfoJson(json.slice(0, json.size() - 1), decoded.initRoot<api::JobInfo>());
  auto info = decoded.getRoot<api::JobInfo>().asReader();
  EXPECT_EQ(info.getId(), "0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(info.getExitCode(), 3);
  EXPECT_EQ(info.getLimits().getMemoryBytes(), 64ull << 20);
  EXPECT_EQ(info.getCreatedAt(), 1700000000000);
  EXPECT_EQ(info.getStartedAt(), 1700000000250);
  EXPECT_EQ(info.getEndedAt(), 1700000001500);
  EXPECT_EQ(info.getUid(), 2000000007u);
}

TEST_F(JobFormat, JsonTimesAreRfc3339InUtcWithTheirMillisecondsBeside) {
  auto info = exitedJob();
  info.setEndedAt(0);
  auto json = jobInfoJson(info);
  for (auto field :
       {"\"createdAt\":\"2023-11-14T22:13:20.000Z\",\"createdAtMillis\":1700000000000,",
        "\"startedAt\":\"2023-11-14T22:13:20.250Z\",\"startedAtMillis\":1700000000250,",
        "\"endedAt\":null,\"endedAtMillis\":0,"}) {
    EXPECT_TRUE(strstr(json.cStr(), field) != nullptr) << field << " not in " << json.cStr();
  }
}

TEST_F(JobFormat, JsonCountsAreNumbers) {
  auto info = exitedJob();
  // Written out in full, not with an exponent.
  info.setMaxOutputBytes(1ull << 50);
  auto json = jobInfoJson(info);
  kj::StringPtr big = "\"maxOutputBytes\":1125899906842624";
  auto at = strstr(json.cStr(), big.cStr());
  ASSERT_TRUE(at != nullptr) << json.cStr();
  EXPECT_TRUE(at[big.size()] == ',' || at[big.size()] == '}') << json.cStr();
  for (auto field : {"\"outputBytes\":12,", "\"memoryBytes\":67108864,", "\"cpuUserMicros\":12000,",
                     "\"peakMemoryBytes\":3145728,", "\"exitCode\":3,", "\"uid\":2000000007,",
                     "\"cpuMillicores\":500,"}) {
    EXPECT_TRUE(strstr(json.cStr(), field) != nullptr) << field << " not in " << json.cStr();
  }
}

TEST(FormatRfc3339, MillisecondsInUtc) {
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(0)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(1)), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(1796173323456)), "2026-12-02T01:02:03.456Z");
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(1700000000999)), "2023-11-14T22:13:20.999Z");
  // Before 1970 the milliseconds still count up within the second.
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(-1)), "1969-12-31T23:59:59.999Z");
  // The far ends RFC 3339 can write, and beyond them nothing.
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(253402300799999)), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(KJ_ASSERT_NONNULL(formatRfc3339(-62135596800000)), "0001-01-01T00:00:00.000Z");
  EXPECT_TRUE(formatRfc3339(253402300800000) == nullptr);
  EXPECT_TRUE(formatRfc3339(INT64_MAX) == nullptr);
  EXPECT_TRUE(formatRfc3339(INT64_MIN) == nullptr);
}

TEST(FormatRfc3339, DoesNotDependOnTheLocalTimeZone) {
  auto saved = getenv("TZ") == nullptr ? kj::Maybe<kj::String>() : kj::str(getenv("TZ"));
  setenv("TZ", "America/St_Johns", 1);
  tzset();
  auto text = formatRfc3339(1796173323456);
  KJ_IF_MAYBE (tz, saved) {
    setenv("TZ", tz->cStr(), 1);
  } else {
    unsetenv("TZ");
  }
  tzset();
  EXPECT_EQ(KJ_ASSERT_NONNULL(text), "2026-12-02T01:02:03.456Z");
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

TEST_F(JobFormat, TableShowsNamesAndLabelsOnlyWhenAJobHasThem) {
  capnp::MallocMessageBuilder listMessage;
  auto jobs = listMessage.initRoot<api::JobManager::ListResults>().initJobs(3);
  for (auto i : kj::indices(jobs)) {
    jobs[i].setId(kj::str("id-", i));
    jobs[i].setOwner("bob");
    jobs[i].setCommand("true");
  }
  jobs[0].setName("web");
  auto labels = jobs[0].initLabels(2);
  labels[0].setKey("team");
  labels[0].setValue("infra");
  labels[1].setKey("tier");
  labels[1].setValue("1");
  // Cut at 40 characters, escaped first.
  auto many = jobs[2].initLabels(3);
  many[0].setKey("description");
  many[0].setValue("a rather long text\tthat goes on");
  many[1].setKey("b");
  many[1].setValue("2");
  many[2].setKey("c");
  many[2].setValue("3");
  EXPECT_EQ(formatJobTable(jobs.asReader()),
            "ID    OWNER  STATE    EXIT  CREATED  NAME  LABELS                                    "
            "COMMAND\n"
            "id-0  bob    running  -     -        web   team=infra,tier=1                         "
            "true\n"
            "id-1  bob    running  -     -        -     -                                         "
            "true\n"
            "id-2  bob    running  -     -        -     description=a rather long text\\tthat ...  "
            "true\n");

  jobs[0].setName("");
  jobs[0].initLabels(0);
  jobs[2].initLabels(0);
  EXPECT_EQ(formatJobTable(jobs.asReader()),
            "ID    OWNER  STATE    EXIT  CREATED  COMMAND\n"
            "id-0  bob    running  -     -        true\n"
            "id-1  bob    running  -     -        true\n"
            "id-2  bob    running  -     -        true\n");
}

TEST_F(JobFormat, StatusShowsTheNameAndEveryLabel) {
  auto info = exitedJob();
  info.setName("nightly");
  auto labels = info.initLabels(2);
  labels[0].setKey("team");
  labels[0].setValue("infra");
  labels[1].setKey("note");
  labels[1].setValue("line\x1b[2J");
  auto status = formatStatus(info);
  EXPECT_TRUE(strstr(status.cStr(), "\nName:         nightly\n") != nullptr) << status.cStr();
  EXPECT_TRUE(strstr(status.cStr(), "\nLabels:       team=infra, note=line\\e[2J\n") != nullptr)
      << status.cStr();
  EXPECT_FALSE(drivesTheTerminal(status));
}

}  // namespace
}  // namespace client
}  // namespace runner

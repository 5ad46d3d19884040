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

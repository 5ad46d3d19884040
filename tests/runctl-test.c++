// runctl against a real runnerd: both run as subprocesses, runctl exactly as a user would, with
// the certificates of the users runnerd's fixture made for the test.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/encoding.h>
#include <kj/vector.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>

#include <string>

#include "certs/authority.h"
#include "certs/credential-files.h"
#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::RunctlOptions;
using testing::RunctlProcess;
using testing::RunctlResult;
using testing::RunnerdFixture;

// One runnerd for the whole suite.
class RunctlEndToEnd : public ::testing::Test {
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

  // What runnerd stored as job `id`'s output.
  static kj::String storedOutput(const std::string& id) {
    return certs::readFile(kj::str(server->dir(), "/logs/", id.c_str(), ".log"));
  }

  static kj::Own<RunctlProcess> spawnRunctl(kj::ArrayPtr<const kj::StringPtr> args,
                                            const RunctlOptions& options = RunctlOptions()) {
    return kj::heap<RunctlProcess>(*server, args, options);
  }

  static RunctlResult runctl(kj::ArrayPtr<const kj::StringPtr> args,
                             const RunctlOptions& options = RunctlOptions()) {
    return testing::runctl(*server, args, options);
  }

  static kj::Own<RunnerdFixture> server;
};

kj::Own<RunnerdFixture> RunctlEndToEnd::server;

bool isOneLine(const std::string& text) {
  return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

std::string trimmed(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

TEST_F(RunctlEndToEnd, RunStreamsOutputAndExitsWithTheJobsCode) {
  auto result = runctl({"run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(result.status, 3);
  EXPECT_EQ(result.out, "out\nerr\n");
  EXPECT_EQ(result.err, "");
}

TEST_F(RunctlEndToEnd, RunWithoutDoubleDashStillStopsOptionsAtTheCommand) {
  // Without the rewrite, "-c" would be taken for an option of runctl's.
  auto result =
      runctl({"run", "-e", "GREETING=hi", "-w", "/tmp", "sh", "-c", "echo $GREETING; pwd"});
  EXPECT_EQ(result.status, 0) << result.err;
  EXPECT_EQ(result.out, "hi\n/tmp\n");
}

TEST_F(RunctlEndToEnd, RunDeliversBinaryOutputByteForByte) {
  // Every byte value, 20000 times over in a random order, about 2.3 MB.
  kj::byte block[60000];
  for (size_t i = 0; i < sizeof(block); i++) block[i] = (i * 7919 + i / 256) % 256;
  auto encoded = kj::encodeBase64(block);
  auto result =
      runctl({"run", "--", "sh", "-c",
              "i=0; while [ $i -lt 40 ]; do echo \"$0\" | base64 -d; i=$((i+1)); done", encoded});
  ASSERT_EQ(result.status, 0) << result.err;
  ASSERT_EQ(result.out.size(), 40 * sizeof(block));
  for (size_t copy = 0; copy < 40; copy++) {
    ASSERT_EQ(memcmp(result.out.data() + copy * sizeof(block), block, sizeof(block)), 0) << copy;
  }
}

TEST_F(RunctlEndToEnd, RunOfACommandThatCannotStartExits127WithItsError) {
  auto result = runctl({"run", "no-such-command-for-runctl"});
  EXPECT_EQ(result.status, 127);
  EXPECT_EQ(result.out, "");
  EXPECT_TRUE(isOneLine(result.err)) << result.err;
  EXPECT_NE(result.err.find("runctl: job "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("could not start: "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("No such file or directory"), std::string::npos) << result.err;
}

TEST_F(RunctlEndToEnd, RunOfAJobKilledBySignalExits128PlusTheSignal) {
  auto result = runctl({"run", "--", "sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(result.status, 128 + SIGKILL);
}

TEST_F(RunctlEndToEnd, InterruptingRunStopsTheJobAndWaitsForItsEnd) {
  auto child = spawnRunctl({"run", "--", "sh", "-c", "echo ready; exec sleep 60"});
  child->readStdoutUntil("ready\n");
  child->signal(SIGINT);
  auto result = child->finish();
  // The job was stopped with SIGTERM, and runctl reports that like docker would.
  EXPECT_EQ(result.status, 128 + SIGTERM);
  EXPECT_EQ(result.out, "ready\n");
  EXPECT_NE(result.err.find("runctl: stopping job "), std::string::npos) << result.err;
}

// `runctl run -- yes | head -1`: once nobody reads the output, the job stops as on Ctrl-C and
// runctl exits quietly as a writer into a closed pipe does, rather than leaving the job writing.
TEST_F(RunctlEndToEnd, RunWhoseOutputIsClosedStopsTheJobAndExits141) {
  auto child = spawnRunctl({"run", "--", "yes", "closed-pipe-marker"});
  child->readStdoutUntil("closed-pipe-marker\n");
  child->closeStdout();
  auto result = child->finish();
  EXPECT_EQ(result.status, 128 + SIGPIPE);
  EXPECT_EQ(result.err, "");

  auto list = runctl({"list"});
  ASSERT_EQ(list.status, 0) << list.err;
  auto at = list.out.find("yes closed-pipe-marker");
  ASSERT_NE(at, std::string::npos) << list.out;
  auto line = list.out.substr(list.out.rfind('\n', at) + 1, at - list.out.rfind('\n', at) - 1);
  EXPECT_NE(line.find("  stopped"), std::string::npos) << list.out;
}

TEST_F(RunctlEndToEnd, LogsWhoseOutputIsClosedExit141Quietly) {
  auto started = runctl({"start", "--", "yes", "logs-closed-marker"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = trimmed(started.out);
  auto child = spawnRunctl({"logs", "-f", id.c_str()});
  child->readStdoutUntil("logs-closed-marker\n");
  child->closeStdout();
  auto result = child->finish();
  EXPECT_EQ(result.status, 128 + SIGPIPE);
  EXPECT_EQ(result.err, "");
  // Only the follower went: the job itself runs on until it is stopped.
  auto status = runctl({"status", id.c_str()});
  EXPECT_NE(status.out.find("State:        running\n"), std::string::npos) << status.out;
  EXPECT_EQ(runctl({"stop", id.c_str()}).status, 0);
}

TEST_F(RunctlEndToEnd, StartStatusListStopAndWaitTellTheSameStory) {
  auto started = runctl({"start", "sleep", "60"});
  ASSERT_EQ(started.status, 0) << started.err;
  ASSERT_TRUE(isOneLine(started.out));
  auto id = trimmed(started.out);
  EXPECT_EQ(id.size(), 36u) << id;

  auto status = runctl({"status", id.c_str()});
  EXPECT_EQ(status.status, 0);
  EXPECT_NE(status.out.find("ID:           " + id + "\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Owner:        alice\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("State:        running\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Command:      sleep 60\n"), std::string::npos) << status.out;

  auto json = runctl({"status", "--json", id.c_str()});
  EXPECT_TRUE(isOneLine(json.out)) << json.out;
  EXPECT_NE(json.out.find("\"state\":\"running\""), std::string::npos) << json.out;

  auto list = runctl({"list"});
  EXPECT_EQ(list.status, 0);
  EXPECT_EQ(list.out.rfind("ID ", 0), 0u) << list.out;
  EXPECT_NE(list.out.find(id + "  alice  running"), std::string::npos) << list.out;

  auto stopped = runctl({"stop", "--grace", "2s", id.c_str()});
  EXPECT_EQ(stopped.status, 0) << stopped.err;
  EXPECT_EQ(stopped.out, id + " stopped by SIGTERM\n");

  auto waited = runctl({"wait", "--json", id.c_str()});
  EXPECT_EQ(waited.status, 128 + SIGTERM);
  EXPECT_NE(waited.out.find("\"state\":\"stopped\""), std::string::npos) << waited.out;
}

TEST_F(RunctlEndToEnd, LogsDeliverFromByteZeroAndFollowUntilTheEnd) {
  auto started = runctl({"start", "--", "sh", "-c", "echo one; sleep 0.5; echo two"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = trimmed(started.out);

  auto followed = runctl({"logs", "-f", id.c_str()});
  EXPECT_EQ(followed.status, 0) << followed.err;
  EXPECT_EQ(followed.out, "one\ntwo\n");

  auto again = runctl({"logs", id.c_str()});
  EXPECT_EQ(again.status, 0);
  EXPECT_EQ(again.out, "one\ntwo\n");
}

TEST_F(RunctlEndToEnd, TwentyMibOfRandomBytesArriveExactlyThroughLogs) {
  auto started = runctl({"start", "--", "head", "-c", "20971520", "/dev/urandom"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = trimmed(started.out);
  ASSERT_EQ(runctl({"wait", id.c_str()}).status, 0);
  auto logs = runctl({"logs", id.c_str()});
  ASSERT_EQ(logs.status, 0) << logs.err;
  // What the job wrote, as runnerd stored it.
  auto written = storedOutput(id);
  ASSERT_EQ(logs.out.size(), 20971520u);
  ASSERT_EQ(written.size(), 20971520u);
  EXPECT_TRUE(memcmp(logs.out.data(), written.begin(), written.size()) == 0);
}

TEST_F(RunctlEndToEnd, TwentyConcurrentFollowersReceiveIdenticalBytes) {
  // Written in pieces, so the followers follow a live file.
  auto started = runctl({"start", "--", "sh", "-c",
                         "for i in 1 2 3 4; do head -c 1048576 /dev/urandom; sleep 0.2; done"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = trimmed(started.out);
  kj::Vector<kj::Own<RunctlProcess>> followers;
  for (int i = 0; i < 20; i++) followers.add(spawnRunctl({"logs", "-f", id.c_str()}));
  kj::Vector<std::string> outputs;
  for (auto& follower : followers) {
    auto result = follower->finish();
    EXPECT_EQ(result.status, 0) << result.err;
    outputs.add(kj::mv(result.out));
  }
  auto written = storedOutput(id);
  ASSERT_EQ(written.size(), 4u * 1048576u);
  for (auto& output : outputs) {
    ASSERT_EQ(output.size(), written.size());
    EXPECT_TRUE(memcmp(output.data(), written.begin(), written.size()) == 0);
  }
}

TEST_F(RunctlEndToEnd, OtherUsersMayReadMetadataButNotOutputOrStop) {
  auto started = runctl({"start", "sleep", "60"});
  auto id = trimmed(started.out);
  RunctlOptions bob;
  bob.user = "bob";

  auto stop = runctl({"stop", id.c_str()}, bob);
  EXPECT_EQ(stop.status, 1);
  EXPECT_TRUE(isOneLine(stop.err)) << stop.err;
  EXPECT_EQ(stop.err.rfind("runctl: permission denied: ", 0), 0u) << stop.err;

  auto logs = runctl({"logs", id.c_str()}, bob);
  EXPECT_EQ(logs.status, 1);
  EXPECT_EQ(logs.err.rfind("runctl: permission denied: ", 0), 0u) << logs.err;

  EXPECT_EQ(runctl({"status", id.c_str()}, bob).status, 0);
  EXPECT_EQ(runctl({"list"}, bob).out.find(id), std::string::npos);
  EXPECT_NE(runctl({"list", "--all"}, bob).out.find(id), std::string::npos);

  EXPECT_EQ(runctl({"stop", "--grace", "0", id.c_str()}).status, 0);
}

TEST_F(RunctlEndToEnd, ServerErrorsAreOneLineThatStartsWithTheirKind) {
  auto result = runctl({"status", "no-such-job"});
  EXPECT_EQ(result.status, 1);
  EXPECT_EQ(result.err, "runctl: not found: job no-such-job\n");

  auto waited = runctl({"wait", "no-such-job"});
  EXPECT_EQ(waited.status, 125);
  EXPECT_EQ(waited.err, "runctl: not found: job no-such-job\n");

  auto id = trimmed(runctl({"start", "sleep", "60"}).out);
  RunctlOptions bob;
  bob.user = "bob";
  auto denied = runctl({"kill", id.c_str()}, bob);
  EXPECT_EQ(denied.status, 1);
  EXPECT_EQ(denied.err, "runctl: permission denied: only the owner of job " + id +
                            " or an admin may signal it\n");

  auto invalid = runctl({"run", "--executor", "nonesuch", "--", "true"});
  EXPECT_EQ(invalid.status, 125);
  EXPECT_TRUE(isOneLine(invalid.err)) << invalid.err;
  EXPECT_EQ(invalid.err.rfind("runctl: invalid: unknown executor 'nonesuch' (known: ", 0), 0u)
      << invalid.err;

  auto conflict = runctl({"rm", id.c_str()});
  EXPECT_EQ(conflict.status, 1);
  EXPECT_EQ(conflict.err,
            "runctl: conflict: job " + id + " is still running (use --force to stop it first)\n");
  // The same line with --json: errors go to stderr as they are.
  auto json = runctl({"status", "--json", "no-such-job"});
  EXPECT_EQ(json.status, 1);
  EXPECT_EQ(json.out, "");
  EXPECT_EQ(json.err, "runctl: not found: job no-such-job\n");

  EXPECT_EQ(runctl({"stop", "--grace", "0", id.c_str()}).status, 0);
}

// A limit, then an unavailable server, on a runnerd of their own (outside RunctlEndToEnd, whose
// runnerd is gone by then: one event loop per thread).
TEST(RunctlErrors, LimitAndUnavailableErrorsSayWhatToDo) {
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
    GTEST_SKIP() << reason->cStr();
  }
  kj::StringPtr flags[] = {"--max-running-per-user=1"};
  RunnerdFixture own(flags);
  auto first = testing::runctl(own, {"start", "sleep", "60"});
  ASSERT_EQ(first.status, 0) << first.err;
  auto limit = testing::runctl(own, {"run", "--", "true"});
  EXPECT_EQ(limit.status, 125);
  EXPECT_EQ(limit.err,
            "runctl: limit: too many running jobs for alice (limit 1); wait for some to end or "
            "stop them\n");
  EXPECT_EQ(testing::runctl(own, {"stop", "--grace", "0", trimmed(first.out).c_str()}).status, 0);

  if (own.supervisorPid() == 0) return;
  own.signalSupervisor(SIGKILL);
  auto unavailable = testing::runctl(own, {"start", "--", "true"});
  EXPECT_EQ(unavailable.status, 1);
  EXPECT_EQ(unavailable.err,
            "runctl: unavailable: the executor 'local' is not answering; try again later\n");
}

TEST_F(RunctlEndToEnd, AnOutputDirectoryRunnerdCannotWriteFailsTheStartInOneLine) {
  // Not even root may add entries to an immutable directory.
  auto logDir = kj::str(server->dir(), "/logs");
  int fd = open(logDir.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  KJ_DEFER(close(fd));
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) {
    GTEST_SKIP() << "the file system of " << logDir.cStr() << " has no inode flags";
  }
  int immutable = flags | FS_IMMUTABLE_FL;
  if (ioctl(fd, FS_IOC_SETFLAGS, &immutable) < 0) {
    GTEST_SKIP() << "cannot make " << logDir.cStr() << " immutable: " << strerror(errno);
  }
  {
    KJ_DEFER(ioctl(fd, FS_IOC_SETFLAGS, &flags));
    // Twice: the first start finds a spare file ready, the second none.
    for (int i = 0; i < 2; ++i) {
      auto result = runctl({"start", "--", "true"});
      EXPECT_EQ(result.status, 1);
      EXPECT_TRUE(isOneLine(result.err)) << result.err;
      // No server path: the reason only.
      EXPECT_EQ(result.err,
                "runctl: unavailable: cannot create the job's output file: Operation not "
                "permitted\n")
          << result.err;
    }
  }
  // Nothing was lost: once the directory is writable again, jobs start.
  auto result = runctl({"run", "--", "echo", "again"});
  EXPECT_EQ(result.status, 0) << result.err;
  EXPECT_EQ(result.out, "again\n");
}

TEST_F(RunctlEndToEnd, UsageErrorsExit2WithOneLine) {
  auto badSize = runctl({"start", "--memory", "12Q", "true"});
  EXPECT_EQ(badSize.status, 2);
  EXPECT_TRUE(isOneLine(badSize.err)) << badSize.err;
  EXPECT_EQ(badSize.err.rfind("runctl start: --memory=12Q: expected bytes", 0), 0u) << badSize.err;

  auto badGrace = runctl({"stop", "--grace", "soon", "x"});
  EXPECT_EQ(badGrace.status, 2);
  EXPECT_TRUE(isOneLine(badGrace.err)) << badGrace.err;

  RunctlOptions noCredentials;
  noCredentials.credentials = false;
  auto missing = runctl({"list"}, noCredentials);
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "runctl: missing --cert (or set RUNCTL_CERT)\n");

  EXPECT_EQ(runctl({"frobnicate"}).status, 2);
}

TEST_F(RunctlEndToEnd, UsageErrorsOfRunAndWaitExit125LikeOtherRunctlFailures) {
  // A 2 from run or wait must mean the job exited 2.
  auto badFlag = runctl({"run", "--bogus", "--", "true"});
  EXPECT_EQ(badFlag.status, 125);
  EXPECT_TRUE(isOneLine(badFlag.err)) << badFlag.err;

  auto noId = runctl({"wait"});
  EXPECT_EQ(noId.status, 125);
  EXPECT_TRUE(isOneLine(noId.err)) << noId.err;

  RunctlOptions noCredentials;
  noCredentials.credentials = false;
  auto missing = runctl({"run", "--", "true"}, noCredentials);
  EXPECT_EQ(missing.status, 125);
  EXPECT_EQ(missing.err, "runctl: missing --cert (or set RUNCTL_CERT)\n");

  EXPECT_EQ(runctl({"run", "--", "sh", "-c", "exit 2"}).status, 2);
}

TEST_F(RunctlEndToEnd, ConnectionFailuresSayWhereAndWhy) {
  RunctlOptions nowhere;
  nowhere.server = "127.0.0.1:1";
  auto list = runctl({"list"}, nowhere);
  EXPECT_EQ(list.status, 1);
  EXPECT_EQ(list.err, "runctl: cannot connect to 127.0.0.1:1: connect(): Connection refused\n");
  EXPECT_EQ(runctl({"run", "true"}, nowhere).status, 125);

  // The server's certificate does not name "elsewhere.example": TLS refuses it.
  auto wrongName = runctl({"--server-name", "elsewhere.example", "list"});
  EXPECT_EQ(wrongName.status, 1);
  EXPECT_TRUE(isOneLine(wrongName.err)) << wrongName.err;
  auto prefix = kj::str("runctl: cannot connect to ", server->address(), ": ");
  EXPECT_EQ(wrongName.err.rfind(prefix.cStr(), 0), 0u) << wrongName.err;
  // Not OpenSSL's "certificate verify failed": what is wrong, and what to use instead.
  EXPECT_NE(wrongName.err.find("the name elsewhere.example is not in the server's certificate "
                               "(it names "),
            std::string::npos)
      << wrongName.err;
  EXPECT_EQ(wrongName.err.find("error:"), std::string::npos) << wrongName.err;
  // A name it does hold is accepted in place of the address.
  EXPECT_EQ(runctl({"--server-name", "localhost", "list"}).status, 0);

  // Credentials from another CA, whose --ca did not sign the server's certificate.
  auto validity = certs::Validity::forDays(1);
  auto other = certs::Authority::create("another CA", validity);
  auto alice = other.issueClient("alice", validity);
  auto ca = kj::str(server->dir(), "/other-ca.pem");
  auto cert = kj::str(server->dir(), "/other-alice.pem");
  auto key = kj::str(server->dir(), "/other-alice-key.pem");
  certs::writeFile(ca, other.certPem(), 0644, true);
  certs::writeFile(cert, alice.certPem, 0644, true);
  certs::writeFile(key, alice.keyPem, 0600, true);
  auto foreign = runctl({"--ca", ca.cStr(), "--cert", cert.cStr(), "--key", key.cStr(), "list"});
  EXPECT_EQ(foreign.status, 1);
  EXPECT_TRUE(isOneLine(foreign.err)) << foreign.err;
  EXPECT_NE(
      foreign.err.find(kj::str("the server's certificate is not signed by the CA in ", ca).cStr()),
      std::string::npos)
      << foreign.err;
}

TEST_F(RunctlEndToEnd, HelpDescribesEveryCommand) {
  auto help = runctl({"--help"});
  EXPECT_EQ(help.status, 0);
  for (auto command : {"start", "run", "logs", "status", "wait", "stop", "list", "--server",
                       "--server-name", "--cert", "--key", "--ca", "RUNCTL_SERVER"}) {
    EXPECT_NE(help.out.find(command), std::string::npos) << command;
  }
  auto run = runctl({"run", "--help"});
  EXPECT_EQ(run.status, 0);
  for (auto option : {"--cpu", "--memory", "--io-read", "--io-write", "--pids", "--isolate",
                      "--env", "--workdir", "Interrupting runctl"}) {
    EXPECT_NE(run.out.find(option), std::string::npos) << option;
  }
}

}  // namespace
}  // namespace runner

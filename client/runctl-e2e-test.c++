// runctl against a real runnerd: certificates from runner's own CA, runnerd started as a
// subprocess on a free loopback port, runctl run as a subprocess exactly as a user would.

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/encoding.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "certs/authority.h"
#include "certs/credential-files.h"

namespace runner {
namespace client {
namespace {

kj::String runfile(kj::StringPtr path) {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test with bazel test");
  return kj::str(srcdir, "/runner/", path);
}

kj::String tempDir(kj::StringPtr name) {
  const char* tmp = getenv("TEST_TMPDIR");
  auto dir = kj::str(tmp != nullptr ? tmp : "/tmp", "/", name, "-XXXXXX");
  KJ_ASSERT(mkdtemp(dir.begin()) != nullptr, dir);
  return dir;
}

// The exit status as a shell shows it: the code, or 128+N for a process killed by signal N.
int shellStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A subprocess with its stdout and stderr on pipes (or stderr in a file). Killed if still
// running when destroyed.
class Child {
 public:
  Child(kj::ArrayPtr<const kj::String> argv, kj::ArrayPtr<const kj::String> env,
        kj::Maybe<kj::StringPtr> stderrFile = nullptr) {
    int outPipe[2], errPipe[2];
    KJ_SYSCALL(pipe2(outPipe, O_CLOEXEC));
    KJ_SYSCALL(pipe2(errPipe, O_CLOEXEC));
    kj::Vector<const char*> args;
    for (auto& arg : argv) args.add(arg.cStr());
    args.add(nullptr);
    kj::Vector<const char*> envp;
    for (auto& entry : env) envp.add(entry.cStr());
    envp.add(nullptr);
    int errFileFd = -1;
    KJ_IF_MAYBE (path, stderrFile) {
      errFileFd = open(path->cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      KJ_ASSERT(errFileFd >= 0, *path);
    }
    KJ_SYSCALL(pid = fork());
    if (pid == 0) {
      KJ_DEFER(_exit(127));
      dup2(outPipe[1], STDOUT_FILENO);
      dup2(errFileFd >= 0 ? errFileFd : errPipe[1], STDERR_FILENO);
      int devNull = open("/dev/null", O_RDONLY);
      dup2(devNull, STDIN_FILENO);
      execve(args[0], const_cast<char**>(args.begin()), const_cast<char**>(envp.begin()));
    }
    if (errFileFd >= 0) close(errFileFd);
    close(outPipe[1]);
    close(errPipe[1]);
    out = kj::AutoCloseFd(outPipe[0]);
    err = kj::AutoCloseFd(errPipe[0]);
  }
  KJ_DISALLOW_COPY(Child);

  ~Child() noexcept(false) {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }

  void signal(int number) { KJ_SYSCALL(kill(pid, number)); }

  // Reads stdout until it holds `marker`.
  void readStdoutUntil(kj::StringPtr marker) {
    while (stdoutText.find(marker.cStr()) == std::string::npos) {
      char buffer[4096];
      ssize_t n;
      KJ_SYSCALL(n = read(out, buffer, sizeof(buffer)));
      KJ_ASSERT(n > 0, "stdout ended before the marker", marker, stdoutText);
      stdoutText.append(buffer, n);
    }
  }

  struct Result {
    int status;
    std::string out;
    std::string err;
  };

  // Reads both pipes to their end and reaps the child.
  Result finish() {
    std::string errText;
    struct pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
    std::string* texts[2] = {&stdoutText, &errText};
    int open = 2;
    while (open > 0) {
      KJ_SYSCALL(poll(fds, 2, -1));
      for (int i = 0; i < 2; i++) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buffer[65536];
        ssize_t n;
        KJ_SYSCALL(n = read(fds[i].fd, buffer, sizeof(buffer)));
        if (n == 0) {
          fds[i].fd = -1;
          --open;
        } else {
          texts[i]->append(buffer, n);
        }
      }
    }
    int status;
    KJ_SYSCALL(waitpid(pid, &status, 0));
    pid = 0;
    return {shellStatus(status), kj::mv(stdoutText), kj::mv(errText)};
  }

 private:
  pid_t pid = 0;
  kj::AutoCloseFd out;
  kj::AutoCloseFd err;
  std::string stdoutText;
};

// How runctl is invoked: as which user, against which server, with or without credentials.
struct Options {
  kj::StringPtr user = "alice";
  kj::Maybe<kj::StringPtr> server;
  bool credentials = true;
};

// One CA, a server certificate for 127.0.0.1 and client certificates for alice and bob; one
// runnerd for the whole suite.
class RunctlEndToEnd : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = tempDir("runctl-e2e");
    auto validity = certs::Validity::forDays(1);
    auto authority = certs::Authority::create("runctl e2e CA", validity);
    kj::StringPtr ips[] = {"127.0.0.1"};
    auto serverCredentials = authority.issueServer({nullptr, nullptr, ips}, validity);
    certs::writeFile(path("ca.pem"), authority.certPem(), 0644, true);
    certs::writeFile(path("server.pem"), serverCredentials.certPem, 0644, true);
    certs::writeFile(path("server-key.pem"), serverCredentials.keyPem, 0600, true);
    for (auto user : {"alice", "bob"}) {
      auto client = authority.issueClient(user, validity);
      certs::writeFile(path(kj::str(user, ".pem")), client.certPem, 0644, true);
      certs::writeFile(path(kj::str(user, "-key.pem")), client.keyPem, 0600, true);
    }
    KJ_SYSCALL(mkdir(path("log").cStr(), 0755));
    KJ_SYSCALL(mkdir(path("state").cStr(), 0700));

    kj::String argv[] = {runfile("runner/runnerd"),
                         kj::str("--listen"),
                         kj::str("127.0.0.1:0"),
                         kj::str("--tls-cert"),
                         path("server.pem"),
                         kj::str("--tls-key"),
                         path("server-key.pem"),
                         kj::str("--tls-ca"),
                         path("ca.pem"),
                         kj::str("--log-dir"),
                         path("log"),
                         kj::str("--state-dir"),
                         path("state"),
                         kj::str("--grace"),
                         kj::str("5")};
    kj::String env[] = {kj::str("PATH=/usr/bin:/bin")};
    runnerd = kj::heap<Child>(argv, env, path("runnerd.log").asPtr());
    server = waitForListeningAddress();
  }

  static void TearDownTestSuite() { runnerd = nullptr; }

  static kj::String path(kj::StringPtr name) { return kj::str(dir, "/", name); }

  // runnerd logs "runnerd listening on 127.0.0.1:PORT ..." once it accepts connections.
  static kj::String waitForListeningAddress() {
    const std::string marker = "listening on 127.0.0.1:";
    for (int attempt = 0; attempt < 1000; attempt++) {
      std::string log = certs::readFile(path("runnerd.log")).cStr();
      size_t at = log.find(marker);
      if (at != std::string::npos) {
        size_t start = at + marker.size();
        size_t end = start;
        while (end < log.size() && '0' <= log[end] && log[end] <= '9') end++;
        if (end > start && end < log.size()) {
          return kj::str("127.0.0.1:", log.substr(start, end - start).c_str());
        }
      }
      usleep(10000);
    }
    KJ_FAIL_ASSERT("runnerd did not start listening", certs::readFile(path("runnerd.log")));
  }

  static kj::Array<kj::String> envFor(const Options& options) {
    kj::Vector<kj::String> env;
    env.add(kj::str("PATH=/usr/bin:/bin"));
    KJ_IF_MAYBE (address, options.server) {
      env.add(kj::str("RUNCTL_SERVER=", *address));
    } else {
      env.add(kj::str("RUNCTL_SERVER=", server));
    }
    if (options.credentials) {
      env.add(kj::str("RUNCTL_CERT=", path(kj::str(options.user, ".pem"))));
      env.add(kj::str("RUNCTL_KEY=", path(kj::str(options.user, "-key.pem"))));
      env.add(kj::str("RUNCTL_CA=", path("ca.pem")));
    }
    return env.releaseAsArray();
  }

  static kj::Own<Child> spawnRunctl(std::initializer_list<kj::StringPtr> args,
                                    const Options& options = Options()) {
    kj::Vector<kj::String> argv;
    argv.add(runfile("client/runctl"));
    for (auto arg : args) argv.add(kj::str(arg));
    auto env = envFor(options);
    return kj::heap<Child>(argv, env);
  }

  static Child::Result runctl(std::initializer_list<kj::StringPtr> args,
                              const Options& options = Options()) {
    return spawnRunctl(args, options)->finish();
  }

  // Shared by the suite: set up once, torn down once.
  static kj::String dir;
  static kj::Own<Child> runnerd;
  // runnerd's HOST:PORT.
  static kj::String server;
};

kj::String RunctlEndToEnd::dir;
kj::Own<Child> RunctlEndToEnd::runnerd;
kj::String RunctlEndToEnd::server;

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
  auto written = certs::readFile(path(kj::str("log/", id.c_str(), ".log")));
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
  kj::Vector<kj::Own<Child>> followers;
  for (int i = 0; i < 20; i++) followers.add(spawnRunctl({"logs", "-f", id.c_str()}));
  kj::Vector<std::string> outputs;
  for (auto& follower : followers) {
    auto result = follower->finish();
    EXPECT_EQ(result.status, 0) << result.err;
    outputs.add(kj::mv(result.out));
  }
  auto written = certs::readFile(path(kj::str("log/", id.c_str(), ".log")));
  ASSERT_EQ(written.size(), 4u * 1048576u);
  for (auto& output : outputs) {
    ASSERT_EQ(output.size(), written.size());
    EXPECT_TRUE(memcmp(output.data(), written.begin(), written.size()) == 0);
  }
}

TEST_F(RunctlEndToEnd, OtherUsersMayReadMetadataButNotOutputOrStop) {
  auto started = runctl({"start", "sleep", "60"});
  auto id = trimmed(started.out);
  Options bob;
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

TEST_F(RunctlEndToEnd, ServerErrorsAreOneCleanLine) {
  auto result = runctl({"status", "no-such-job"});
  EXPECT_EQ(result.status, 1);
  EXPECT_EQ(result.err, "runctl: job not found: no-such-job\n");

  auto waited = runctl({"wait", "no-such-job"});
  EXPECT_EQ(waited.status, 125);
  EXPECT_EQ(waited.err, "runctl: job not found: no-such-job\n");
}

TEST_F(RunctlEndToEnd, UsageErrorsExit2WithOneLine) {
  auto badSize = runctl({"start", "--memory", "12Q", "true"});
  EXPECT_EQ(badSize.status, 2);
  EXPECT_TRUE(isOneLine(badSize.err)) << badSize.err;
  EXPECT_EQ(badSize.err.rfind("runctl start: --memory=12Q: expected bytes", 0), 0u) << badSize.err;

  auto badGrace = runctl({"stop", "--grace", "soon", "x"});
  EXPECT_EQ(badGrace.status, 2);
  EXPECT_TRUE(isOneLine(badGrace.err)) << badGrace.err;

  Options noCredentials;
  noCredentials.credentials = false;
  auto missing = runctl({"list"}, noCredentials);
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "runctl: missing --cert (or set RUNCTL_CERT)\n");

  EXPECT_EQ(runctl({"frobnicate"}).status, 2);
}

TEST_F(RunctlEndToEnd, ConnectionFailuresSayWhereAndWhy) {
  Options nowhere;
  nowhere.server = "127.0.0.1:1";
  auto list = runctl({"list"}, nowhere);
  EXPECT_EQ(list.status, 1);
  EXPECT_EQ(list.err, "runctl: cannot connect to 127.0.0.1:1: connect(): Connection refused\n");
  EXPECT_EQ(runctl({"run", "true"}, nowhere).status, 125);

  // The server's certificate does not name "elsewhere.example": TLS refuses it.
  auto wrongName = runctl({"--server-name", "elsewhere.example", "list"});
  EXPECT_EQ(wrongName.status, 1);
  EXPECT_TRUE(isOneLine(wrongName.err)) << wrongName.err;
  EXPECT_EQ(wrongName.err.rfind(kj::str("runctl: cannot connect to ", server, ": ").cStr(), 0), 0u)
      << wrongName.err;
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
}  // namespace client
}  // namespace runner

// End-to-end tests of runnerd: a real server process, real mutual TLS with certificates made
// by the test, and Cap'n Proto clients speaking the public schema.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <dirent.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>

#include "tests/e2e-support.h"

namespace runner {
namespace {

using namespace testing;


TEST(Server, AuthorizationMatrix) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  auto bob = f.connect("bob");
  auto admin = f.connect("admin");
  RunnerdFixture::Client* callers[] = {alice.get(), bob.get(), admin.get()};
  kj::StringPtr names[] = {"alice", "bob", "admin"};

  auto aliceJob = startJob(f, *alice, {"/bin/echo", "alice's output"});
  auto bobJob = startJob(f, *bob, {"/bin/echo", "bob's output"});
  auto adminJob = startJob(f, *admin, {"/bin/echo", "admin's output"});
  struct Target {
    kj::StringPtr owner;
    kj::StringPtr id;
    kj::StringPtr output;
    RunnerdFixture::Client* ownerClient;
  } targets[] = {{"alice", aliceJob.id, "alice's output\n", alice.get()},
                 {"bob", bobJob.id, "bob's output\n", bob.get()},
                 {"admin", adminJob.id, "admin's output\n", admin.get()}};

  for (uint c = 0; c < 3; c++) {
    auto& client = *callers[c];
    for (auto& target : targets) {
      bool mayControl = names[c] == target.owner || names[c] == "admin";
      SCOPED_TRACE(kj::str(names[c], " on ", target.owner, "'s job").cStr());

      // status and wait: anyone.
      auto get = client.manager.getRequest();
      get.setId(target.id);
      auto waited = get.send().getJob().waitRequest().send().wait(f.io.waitScope);
      EXPECT_EQ(waited.getInfo().getState(), api::State::EXITED);
      kj::Own<capnp::Response<api::Job::InfoResults>> keep;
      EXPECT_EQ(infoOf(f, client, target.id, keep).getOwner(), target.owner);

      // logs: owner and admin.
      KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                          [&]() { EXPECT_EQ(readLogs(f, client, target.id), target.output); })) {
        EXPECT_FALSE(mayControl) << e->getDescription().cStr();
        EXPECT_TRUE(contains(e->getDescription(), "permission denied"))
            << e->getDescription().cStr();
      } else {
        EXPECT_TRUE(mayControl) << "read the output of someone else's job";
      }

      // stop: owner and admin; a fresh running job of the target's owner each time.
      auto victim = startJob(f, *target.ownerClient, {"/bin/sleep", "1000"});
      auto stop = client.manager.getRequest();
      stop.setId(victim.id);
      auto stopped = errorOf(f, stop.send().getJob().stopRequest().send());
      kj::Own<capnp::Response<api::Job::InfoResults>> keepVictim;
      auto state = infoOf(f, client, victim.id, keepVictim).getState();
      if (mayControl) {
        EXPECT_EQ(stopped, nullptr);
        EXPECT_EQ(state, api::State::STOPPED);
      } else {
        ASSERT_NE(stopped, nullptr);
        EXPECT_TRUE(contains(KJ_ASSERT_NONNULL(stopped), "permission denied"));
        EXPECT_EQ(state, api::State::RUNNING);
        auto cleanup = target.ownerClient->manager.getRequest();
        cleanup.setId(victim.id);
        cleanup.send().getJob().stopRequest().send().wait(f.io.waitScope);
      }
    }

    // list: one's own jobs by default, everyone's with allUsers.
    auto own = client.manager.listRequest();
    auto mine = own.send().wait(f.io.waitScope);
    for (auto info : mine.getJobs()) EXPECT_EQ(info.getOwner(), names[c]);
    auto all = client.manager.listRequest();
    all.initFilter().setAllUsers(true);
    // The three jobs with output, and three stop victims per caller so far.
    EXPECT_EQ(all.send().wait(f.io.waitScope).getJobs().size(), 3u + 3u * (c + 1));
  }

  auto who = admin->manager.whoamiRequest().send().wait(f.io.waitScope);
  EXPECT_EQ(who.getUser(), "admin");
  EXPECT_TRUE(who.getAdmin());
  auto whoBob = bob->manager.whoamiRequest().send().wait(f.io.waitScope);
  EXPECT_EQ(whoBob.getUser(), "bob");
  EXPECT_FALSE(whoBob.getAdmin());
  EXPECT_TRUE(contains(f.serverLog(), "permission denied: user=bob"));
}

TEST(Server, PipelinedStartAndWatchDeliversEverything) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  auto request = alice->manager.startRequest();
  request.initSpec().setCommand("/bin/sh");
  request.getSpec().initArgs(2).set(0, "-c");
  request.getSpec().getArgs().set(1, "printf 'first '; printf second");
  auto started = request.send();
  // Called on the promised job: no round trip waits for start's answer.
  auto watch = started.getJob().watchOutputRequest();
  auto collector = kj::heap<Collector>();
  auto& c = *collector;
  watch.setSink(kj::mv(collector));
  watch.setFollow(true);
  auto handle = watch.send().wait(f.io.waitScope);
  c.whenEnded().wait(f.io.waitScope);
  EXPECT_EQ(c.text(), "first second");
  EXPECT_EQ(c.endState, api::State::EXITED);
  EXPECT_EQ(started.wait(f.io.waitScope).getInfo().getOwner(), "alice");
}

// A plain TCP connection to runnerd that never starts a TLS handshake.

TEST(Server, ClearErrorsForUnknownIdEmptyCommandAndMissingCommand) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");

  auto get = alice->manager.getRequest();
  get.setId("00000000-0000-4000-8000-000000000000");
  auto unknown = errorOf(f, get.send());
  ASSERT_NE(unknown, nullptr);
  EXPECT_EQ(KJ_ASSERT_NONNULL(unknown),
            "remote exception: not found: job 00000000-0000-4000-8000-000000000000");

  auto empty = alice->manager.startRequest();
  empty.initSpec().setCommand("");
  auto emptyError = errorOf(f, empty.send());
  ASSERT_NE(emptyError, nullptr);
  EXPECT_TRUE(contains(KJ_ASSERT_NONNULL(emptyError), "empty command"));

  auto missing = startJob(f, *alice, {"/no/such/program"});
  EXPECT_EQ(missing.state, api::State::FAILED);
  EXPECT_TRUE(contains(missing.error, "No such file or directory")) << missing.error.cStr();

  auto binary = alice->manager.startRequest();
  binary.initSpec().setCommand("/bin/echo");
  const char invalid[] = {'o', 'k', char(0xff), char(0xfe), 0};
  binary.getSpec().initArgs(1).set(0, invalid);
  auto binaryError = errorOf(f, binary.send());
  ASSERT_NE(binaryError, nullptr);
  EXPECT_TRUE(contains(KJ_ASSERT_NONNULL(binaryError), "not valid UTF-8"));

  auto nul = alice->manager.startRequest();
  nul.initSpec().setCommand("/bin/echo");
  const char withNul[] = {'a', 0, 'b', 0};
  nul.getSpec().initArgs(1).set(0, capnp::Text::Reader(withNul, 3));
  auto nulError = errorOf(f, nul.send());
  ASSERT_NE(nulError, nullptr);
  EXPECT_TRUE(contains(KJ_ASSERT_NONNULL(nulError), "NUL byte"));

  // A forged log line in a command stays on one line of runnerd's log.
  auto forged = startJob(f, *alice, {"nope\n2026-01-01T00:00:00.000Z job stopping id=x"});
  EXPECT_EQ(forged.state, api::State::FAILED);
  EXPECT_FALSE(contains(f.serverLog(), "\n2026-01-01T00:00:00.000Z job stopping"));
  EXPECT_TRUE(contains(f.serverLog(), "nope\\n2026"));

  // The server is still serving.
  EXPECT_EQ(alice->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
}

TEST(Server, RunningOutOfDescriptorsDoesNotStopTheServer) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  f.lowerDescriptorLimit(f.serverDescriptors() + 8);
  kj::Vector<kj::AutoCloseFd> flood;
  for (int i = 0; i < 40; i++) flood.add(kj::AutoCloseFd(connectTcp(f.address())));
  // runnerd refuses connections itself near its limit (counted every 100 ms), or accept() fails
  // in between; either way it goes on.
  for (int i = 0; i < 500; i++) {
    auto log = f.serverLog();
    if (contains(log, "accept failed") || contains(log, "short of descriptors")) break;
    f.io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(f.io.waitScope);
  }
  EXPECT_TRUE(contains(f.serverLog(), "accept failed") ||
              contains(f.serverLog(), "short of descriptors"));
  flood.clear();
  // Once descriptors are free again, clients are served.
  for (int i = 0; i < 300; i++) {
    auto e = kj::runCatchingExceptions([&]() {
      auto alice = f.connect("alice");
      alice->manager.whoamiRequest().send().wait(f.io.waitScope);
    });
    if (e == nullptr) return;
    f.io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(f.io.waitScope);
  }
  ADD_FAILURE() << "runnerd did not serve again after the descriptors were freed";
}

TEST(Server, ClientThatDisconnectsMidStreamFreesItsFollower) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto owner = f.connect("alice");
  auto job = startJob(f, *owner, {"/bin/sh", "-c", "while :; do echo tick; sleep 0.01; done"});
  size_t before = f.serverDescriptors();
  {
    auto viewer = f.connect("alice");
    auto collector = kj::heap<Collector>();
    auto& c = *collector;
    auto get = viewer->manager.getRequest();
    get.setId(job.id);
    auto watch = get.send().getJob().watchOutputRequest();
    watch.setSink(kj::mv(collector));
    watch.setFollow(true);
    auto handle = watch.send().wait(f.io.waitScope);
    while (c.bytes.size() < 50)
      f.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(f.io.waitScope);
    EXPECT_GT(f.serverDescriptors(), before);
  }
  // The connection is gone; the server notices and frees the connection and the follower.
  for (int i = 0; i < 500 && f.serverDescriptors() > before; i++) {
    f.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(f.io.waitScope);
  }
  EXPECT_EQ(f.serverDescriptors(), before);
  auto again = f.connect("alice");
  EXPECT_EQ(again->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
  job.job.stopRequest().send().wait(f.io.waitScope);
}

TEST(Server, NeverReadingClientCostsBoundedMemory) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  // A first job without followers warms what any job costs once (the store's page cache, the
  // allocator's arenas), so that the figure below is what the stalled follower costs.
  startJob(f, *alice, {"/bin/sh", "-c", "head -c 268435456 /dev/zero"})
      .job.waitRequest()
      .send()
      .wait(f.io.waitScope);
  size_t before = f.serverRssKib();
  auto job = startJob(f, *alice, {"/bin/sh", "-c", "head -c 268435456 /dev/zero"});
  auto collector = kj::heap<Collector>();
  auto& c = *collector;
  c.stall = true;
  auto watch = job.job.watchOutputRequest();
  watch.setSink(kj::mv(collector));
  watch.setFollow(true);
  auto handle = watch.send().wait(f.io.waitScope);
  auto ended = job.job.waitRequest().send().wait(f.io.waitScope);
  // The job was never held back by the stalled reader.
  EXPECT_EQ(ended.getInfo().getOutputBytes(), 268435456u);
  EXPECT_EQ(ended.getInfo().getState(), api::State::EXITED);
  f.io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).wait(f.io.waitScope);
  size_t after = f.serverRssKib();
  KJ_LOG(WARNING, "runnerd RSS before and after a stalled 256 MiB follower (KiB)", before, after,
         c.bytes.size());
  EXPECT_LT(after, before + 4096) << "runnerd grew by " << (after - before) << " KiB";
  EXPECT_LT(c.bytes.size(), 1024u * 1024u);
}

TEST(Server, RestartedServerStillAnswersForOldJobs) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  kj::String id;
  {
    auto alice = f.connect("alice");
    auto job = startJob(f, *alice, {"/bin/sh", "-c", "echo before restart; exit 4"});
    job.job.waitRequest().send().wait(f.io.waitScope);
    id = kj::str(job.id);
  }
  f.stop();
  f.start();
  auto alice = f.connect("alice");
  kj::Own<capnp::Response<api::Job::InfoResults>> keep;
  auto info = infoOf(f, *alice, id, keep);
  EXPECT_EQ(info.getState(), api::State::EXITED);
  EXPECT_EQ(info.getExitCode(), 4);
  EXPECT_EQ(readLogs(f, *alice, id), "before restart\n");
}

// Whether a live process has `marker` in its command line.
bool processMarkedRuns(const std::string& marker) {
  DIR* proc = opendir("/proc");
  KJ_ASSERT(proc != nullptr);
  bool found = false;
  while (struct dirent* entry = readdir(proc)) {
    if (atoi(entry->d_name) <= 0 || atoi(entry->d_name) == getpid()) continue;
    auto cmdline = readWhatIsThere(std::string("/proc/") + entry->d_name + "/cmdline");
    if (cmdline.find(marker) != std::string::npos) found = true;
  }
  closedir(proc);
  return found;
}

TEST(Server, ShutdownLeavesRunningJobsToTheSupervisorAndTheNextRunnerdTakesThemBack) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  kj::String id;
  std::string marker = "shutdown-marker-" + std::to_string(getpid());
  {
    auto alice = f.connect("alice");
    auto started = startJob(
        f, *alice, {"/bin/sh", "-c", "echo before; while :; do sleep 1; done", marker.c_str()});
    id = kj::str(started.id);
  }
  f.stop();
  EXPECT_TRUE(processMarkedRuns(marker)) << "the job runs on without runnerd";
  f.start();
  auto alice = f.connect("alice");
  {
    kj::Own<capnp::Response<api::Job::InfoResults>> keep;
    EXPECT_EQ(infoOf(f, *alice, id, keep).getState(), api::State::RUNNING);
  }
  auto get = alice->manager.getRequest();
  get.setId(id);
  get.send().getJob().stopRequest().send().wait(f.io.waitScope);
  kj::Own<capnp::Response<api::Job::InfoResults>> keep;
  EXPECT_EQ(infoOf(f, *alice, id, keep).getState(), api::State::STOPPED);
  EXPECT_EQ(readLogs(f, *alice, id), "before\n");
  EXPECT_FALSE(processMarkedRuns(marker));
}

// A raw OpenSSL client, blocking: runnerd is another process.
struct RawTls {
  SSL_CTX* ctx;
  SSL* ssl = nullptr;
  int fd = -1;

  explicit RawTls(int maxVersion) : ctx(SSL_CTX_new(TLS_client_method())) {
    SSL_CTX_set_max_proto_version(ctx, maxVersion);
  }
  ~RawTls() {
    if (ssl != nullptr) SSL_free(ssl);
    if (fd >= 0) close(fd);
    SSL_CTX_free(ctx);
  }

  // Handshakes and reads once: true if the server accepted the client.
  bool connectAndRead(kj::StringPtr address) {
    auto colon = KJ_ASSERT_NONNULL(address.findLast(':'));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(kj::str(address.slice(colon + 1)).parseAs<uint16_t>());
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    KJ_ASSERT(::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) return false;
    char byte;
    // The server never speaks first on a healthy connection, so a read that returns means the
    // server closed or alerted: give it a bounded time to do so.
    struct timeval timeout = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    int n = SSL_read(ssl, &byte, 1);
    return n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ;
  }
};

TEST(Server, Tls12OnlyClientIsRefusedAndLogged) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  RawTls client(TLS1_2_VERSION);
  EXPECT_FALSE(client.connectAndRead(f.address()));
  f.waitForLog("refused TLS handshake peer=127.0.0.1:");
}

TEST(Server, ClientWithoutCertificateIsRefusedAndLogged) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  RawTls client(TLS1_3_VERSION);
  EXPECT_FALSE(client.connectAndRead(f.address()));
  f.waitForLog("refused TLS handshake peer=127.0.0.1:");
}

TEST(Server, ExpiredAndForeignCertificatesAreRefused) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  f.issue("carol", -7200, -3600);
  f.issueFromOtherCa("mallory");
  for (auto user : {"carol", "mallory"}) {
    SCOPED_TRACE(user);
    auto e = kj::runCatchingExceptions([&]() {
      auto client = f.connect(user);
      client->manager.whoamiRequest().send().wait(f.io.waitScope);
    });
    EXPECT_NE(e, nullptr) << user << " was let in";
  }
  f.waitForLog("refused TLS handshake");
}

TEST(Server, SilentConnectionsCannotLockOutARealClient) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  // 64 connections that never handshake take every handshake slot of this address...
  kj::Vector<kj::AutoCloseFd> silent;
  for (int i = 0; i < 64; i++) silent.add(kj::AutoCloseFd(connectTcp(f.address())));
  // ...and a real client still gets in at once, evicting the oldest of them.
  auto alice = f.connect("alice");
  EXPECT_EQ(alice->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
  f.waitForLog("handshakes in progress");
  struct timeval timeout = {5, 0};
  setsockopt(silent[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char byte;
  EXPECT_EQ(read(silent[0], &byte, 1), 0) << "the oldest silent connection was not closed";
  // A flood keeps evicting only silent connections; the established client stays served.
  for (int i = 0; i < 100; i++) silent.add(kj::AutoCloseFd(connectTcp(f.address())));
  EXPECT_EQ(alice->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
}

TEST(Server, AFloodFromOneAddressOnlyEvictsItself) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  // One address keeps opening connections that never handshake...
  kj::Vector<kj::AutoCloseFd> flood;
  for (int i = 0; i < 200; i++) flood.add(kj::AutoCloseFd(connectTcp(f.address(), "127.0.0.2")));
  f.waitForLog("dropped TLS handshake peer=127.0.0.2:");
  // ...while a client from another address connects and is served, each time.
  for (int round = 0; round < 5; round++) {
    auto alice = f.connect("alice");
    EXPECT_EQ(alice->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
    for (int i = 0; i < 50; i++) {
      flood.add(kj::AutoCloseFd(connectTcp(f.address(), "127.0.0.2")));
    }
  }
  // The flood's oldest connections were closed: at most 64 of its handshakes are kept.
  struct timeval timeout = {5, 0};
  setsockopt(flood[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char byte;
  EXPECT_EQ(read(flood[0], &byte, 1), 0) << "the flood's oldest connection was not closed";
  EXPECT_FALSE(contains(f.serverLog(), "dropped TLS handshake peer=127.0.0.1:"));
}

TEST(Server, OversizedRequestIsRefusedAndTheServerKeepsServing) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  size_t before = f.serverRssKib();
  auto startWithArgument = [&](size_t bytes) {
    auto mallory = f.connect("alice");
    auto request = mallory->manager.startRequest();
    auto spec = request.initSpec();
    spec.setCommand("/bin/true");
    auto huge = kj::heapArray<char>(bytes + 1);
    memset(huge.begin(), 'x', huge.size());
    huge.back() = '\0';
    spec.initArgs(1).set(0, capnp::Text::Reader(huge.begin(), bytes));
    return errorOf(f, request.send());
  };
  // Past the spec's bound but within a message's: refused with a clear error.
  auto error = startWithArgument(1536 * 1024);
  ASSERT_NE(error, nullptr) << "a 1.5 MiB spec was accepted";
  EXPECT_TRUE(contains(KJ_ASSERT_NONNULL(error), "too large")) << KJ_ASSERT_NONNULL(error).cStr();
  // 16 MiB in one argument, past the largest message runnerd reads: the connection is dropped
  // without the server holding the message.
  EXPECT_NE(startWithArgument(16 * 1024 * 1024), nullptr) << "a 16 MiB request was accepted";
  auto alice = f.connect("alice");
  EXPECT_EQ(alice->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
  EXPECT_LT(f.serverRssKib(), before + 8192);
}

// Holds whoever execs `path` inside execve(), after the switch to the job user and before the
// new program starts: a write lease makes the kernel's open of the file for exec wait until
// the lease is given up (or /proc/sys/fs/lease-break-time has passed, 45 s by default). The
// lease break is announced to this process with SIGIO, ignored meanwhile.
class ExecHold {
 public:
  explicit ExecHold(kj::StringPtr path) {
    previousSigio = signal(SIGIO, SIG_IGN);
    KJ_SYSCALL(fd = open(path.cStr(), O_RDONLY | O_CLOEXEC), path);
    if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0) error = kj::str(strerror(errno));
  }
  ~ExecHold() {
    close(fd);
    signal(SIGIO, previousSigio);
  }
  KJ_DISALLOW_COPY(ExecHold);

  // Empty when the hold is in place, otherwise why not.
  kj::String error = kj::str();

 private:
  int fd = -1;
  sighandler_t previousSigio;
};

// Another job of the run-as user stops every new job process of this runnerd it can see,
// including ones between the switch to that user and exec; two of the starts are held inside
// exec (ExecHold), so the attacker is sure to catch those. The server must go on serving, and
// every start must resolve. The attacker is limited to children of this test's own runnerd
// (pgrep -P), so that tests running in parallel keep their jobs.
TEST(Server, StoppingALaunchingJobCannotFreezeTheServer) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto bob = f.connect("bob");
  auto alice = f.connect("alice");
  auto observer = f.connect("admin");
  auto& timer = f.io.provider->getTimer();
  auto runnerdPid = kj::str(f.pid());

  // A copy of /bin/true that the held starts run, in a directory the job user may enter.
  mkdir("/var/lib/runner-tests", 0755);
  auto heldDir = kj::str("/var/lib/runner-tests/runner-held.XXXXXX");
  ASSERT_NE(mkdtemp(heldDir.begin()), nullptr) << strerror(errno);
  auto held = kj::str(heldDir, "/held-true");
  KJ_DEFER({
    unlink(held.cStr());
    rmdir(heldDir.cStr());
  });
  KJ_SYSCALL(chmod(heldDir.cStr(), 0755));
  ASSERT_EQ(system(kj::str("cp /bin/true ", held).cStr()), 0);

  auto continueStopped = [&]() {
    auto command = kj::str("pgrep -P ", runnerdPid, " -u runner-jobs | xargs -r kill -CONT");
    EXPECT_EQ(system(command.cStr()), 0);
  };
  KJ_DEFER(continueStopped());

  auto attacker = startJob(f, *bob,
                           {"/bin/sh", "-c",
                            "while :; do for p in $(pgrep -P \"$1\" -u runner-jobs); do "
                            "[ $p != $$ ] && kill -STOP $p; done; done",
                            "attacker", runnerdPid});
  ASSERT_EQ(attacker.state, api::State::RUNNING) << attacker.error.cStr();

  auto answersWithin = [&](kj::Promise<bool>&& promise, kj::Duration limit) {
    return promise.exclusiveJoin(timer.afterDelay(limit).then([]() { return false; }))
        .wait(f.io.waitScope);
  };
  size_t started = 0;
  size_t timedOut = 0;
  for (int i = 0; i < 20; ++i) {
    bool hold = i == 5 || i == 15;
    kj::Maybe<kj::Own<ExecHold>> execHold;
    if (hold) {
      auto& h = *execHold.emplace(kj::heap<ExecHold>(held));
      ASSERT_EQ(h.error, "") << "cannot take a lease on " << held.cStr();
    }
    auto request = alice->manager.startRequest();
    request.initSpec().setCommand(hold ? held.asPtr() : "/bin/true"_kj);
    auto starting = request.send();
    EXPECT_TRUE(answersWithin(observer->manager.whoamiRequest().send().then(
                                  [](capnp::Response<api::JobManager::WhoamiResults>&& response) {
                                    return response.getUser() == "admin";
                                  }),
                              2 * kj::SECONDS))
        << "whoami did not answer within 2 s while start " << i << " was pending";
    api::State state = api::State::LOST;
    kj::String error;
    EXPECT_TRUE(
        answersWithin(starting.then([&](capnp::Response<api::JobManager::StartResults>&& response) {
          state = response.getInfo().getState();
          error = kj::str(response.getInfo().getError());
          return true;
        }),
                      10 * kj::SECONDS + 5 * kj::SECONDS))
        << "start " << i << " did not resolve";
    if (state == api::State::FAILED) {
      ++timedOut;
      EXPECT_EQ(error,
                "the command did not start within 10s (it was stopped or is stuck before exec)");
    } else {
      ++started;
      EXPECT_FALSE(hold) << "start " << i << " was held in exec, yet started";
      EXPECT_TRUE(state == api::State::RUNNING || state == api::State::EXITED)
          << "start " << i << ": state " << static_cast<int>(state);
    }
  }
  EXPECT_GE(timedOut, 2u);
  std::cout << started << " jobs started, " << timedOut << " were stopped or held before exec"
            << std::endl;

  auto stop = bob->manager.getRequest();
  stop.setId(attacker.id);
  auto stopRequest = stop.send().getJob().stopRequest();
  stopRequest.setGraceMillis(1000);
  EXPECT_EQ(stopRequest.send().wait(f.io.waitScope).getInfo().getState(), api::State::STOPPED);
}

}  // namespace
}  // namespace runner

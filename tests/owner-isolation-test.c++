// Owners are isolated from each other on the host, not only in the API: a job of alice attacks a
// running job of bob through the kernel, the way a user of a shared runnerd could, and every
// attack fails. Everything is driven through runctl against a real runnerd in its default mode
// (--users dynamic: a uid of each owner's own, a private home, a private /tmp and /dev/shm per
// job), with both executors. The host side (its /tmp, its memory, its processes) is read by the
// test itself.

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <signal.h>
#include <stdlib.h>
#include <linux/keyctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::runctl;
using testing::RunctlOptions;
using testing::RunctlResult;
using testing::RunnerdFixture;

constexpr uint64_t MIB = 1 << 20;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) {
  struct stat info;
  return lstat(path.c_str(), &info) == 0;
}

// The state letter of process `pid` (field 3 of /proc/PID/stat), or 0 when it is gone.
char processState(pid_t pid) {
  auto stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return 0;
  return stat[close + 2];
}

// Gone, or a zombie its new parent has not reaped yet: either way it runs no more.
bool processEnded(pid_t pid) {
  char state = processState(pid);
  return state == 0 || state == 'Z' || state == 'X';
}

bool waitUntilEnded(pid_t pid) {
  for (int i = 0; i < 500 && !processEnded(pid); ++i) usleep(10000);
  return processEnded(pid);
}

// Shmem of /proc/meminfo (tmpfs pages, /dev/shm among them), in bytes.
uint64_t hostShmemBytes() {
  std::istringstream lines(readFile("/proc/meminfo"));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("Shmem:", 0) == 0) return strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  KJ_FAIL_ASSERT("no Shmem line in /proc/meminfo");
}

// The value of "NAME:" in `runctl status` output, without the padding and the newline.
std::string statusField(const std::string& status, const std::string& name) {
  std::istringstream lines(status);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      auto value = line.substr(name.size() + 1);
      return value.substr(value.find_first_not_of(' '));
    }
  }
  return "";
}

RunctlOptions as(kj::StringPtr user) {
  RunctlOptions options;
  options.user = user;
  return options;
}

std::string cannotRunHere() {
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
    return reason->cStr();
  }
  return "";
}

// The attack helper, copied where every job's uid can run it (Bazel's runfiles are under root's
// private cache).
std::string installAttackHelper(RunnerdFixture& server) {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_ASSERT(srcdir != nullptr, "TEST_SRCDIR is not set: run this under bazel test");
  auto target = std::string(server.dir().cStr()) + "/attack";
  auto copy = "install -m 0755 '" + std::string(srcdir) + "/runner/tests/attack' '" + target + "'";
  KJ_ASSERT(system(copy.c_str()) == 0, copy);
  return target;
}

// bob's running job, as alice's jobs find it: its main process and its home.
struct Victim {
  std::string id;
  pid_t pid = 0;
  std::string home;
};

class OwnerIsolation : public ::testing::TestWithParam<const char*> {
 protected:
  static void SetUpTestSuite() {
    if (!cannotRunHere().empty()) return;
    // runnerd starts in a session keyring of its own, as a service does under systemd, which
    // its jobs would share unless each got one of its own.
    KJ_SYSCALL(syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "owner-isolation-test"));
    server = kj::heap<RunnerdFixture>();
    attack = installAttackHelper(*server);
  }
  static void TearDownTestSuite() { server = nullptr; }

  void SetUp() override {
    if (!cannotRunHere().empty()) GTEST_SKIP() << cannotRunHere();
  }

  const char* executor() const { return GetParam(); }

  // Starts a job of bob that keeps a secret in its environment, files in its /tmp and /dev/shm,
  // and prints its pid as the only output it will ever write.
  Victim startVictim() {
    auto started = runctl(
        *server, {"start", "--executor", executor(), "--env", "SECRET=hunter2", "--", "sh", "-c",
                  "echo bob-tmp > /tmp/bob-file; echo bob-shm > /dev/shm/bob-shm; "
                  "echo bob-var > /var/tmp/bob-var; echo $$; exec sleep 1000"},
        as("bob"));
    KJ_ASSERT(started.status == 0, started.err);
    Victim victim;
    victim.id = started.out.substr(0, started.out.size() - 1);
    for (int i = 0; i < 500 && victim.pid == 0; ++i) {
      auto logs = runctl(*server, {"logs", victim.id.c_str()}, as("bob"));
      if (!logs.out.empty() && logs.out.back() == '\n') victim.pid = atoi(logs.out.c_str());
      if (victim.pid == 0) usleep(10000);
    }
    KJ_ASSERT(victim.pid > 0, "bob's job never printed its pid");
    // Anyone may read a job's metadata, its working directory (bob's home) included.
    auto status = runctl(*server, {"status", victim.id.c_str()}, as("alice"));
    victim.home = statusField(status.out, "Working dir");
    KJ_ASSERT(!victim.home.empty(), status.out);
    return victim;
  }

  // Runs `script` as a job of alice, with the executor under test.
  RunctlResult alice(const std::string& script) {
    return runctl(*server,
                  {"run", "--executor", executor(), "--", "sh", "-c", kj::StringPtr(script.c_str())},
                  as("alice"));
  }

  // bob's job is untouched: still running, not stopped, its output exactly what it wrote.
  void expectUntouched(const Victim& victim) {
    EXPECT_NE(processState(victim.pid), 'T') << "bob's job was stopped";
    EXPECT_FALSE(processEnded(victim.pid)) << "bob's job was killed";
    auto status = runctl(*server, {"status", victim.id.c_str()}, as("bob"));
    EXPECT_EQ(statusField(status.out, "State"), "running") << status.out;
    auto logs = runctl(*server, {"logs", victim.id.c_str()}, as("bob"));
    EXPECT_EQ(logs.out, std::to_string(victim.pid) + "\n");
  }

  void stop(const Victim& victim) {
    auto stopped = runctl(*server, {"stop", "--grace", "0s", victim.id.c_str()}, as("bob"));
    EXPECT_EQ(stopped.status, 0) << stopped.err;
  }

  static kj::Own<RunnerdFixture> server;
  static std::string attack;
};

kj::Own<RunnerdFixture> OwnerIsolation::server;
std::string OwnerIsolation::attack;

TEST_P(OwnerIsolation, TwoOwnersRunAsDifferentUidsWithTheirOwnHomes) {
  auto uidOf = [&](kj::StringPtr user) {
    auto run = runctl(*server,
                      {"run", "--executor", executor(), "--", "sh", "-c",
                       "id -u; id -g; echo $HOME; echo $USER; echo $LOGNAME; pwd"},
                      as(user));
    EXPECT_EQ(run.status, 0) << run.err;
    return run.out;
  };
  auto alice = uidOf("alice");
  auto bob = uidOf("bob");
  EXPECT_NE(alice, bob);
  std::istringstream lines(alice);
  std::string uid, gid, home, user, logname, cwd;
  lines >> uid >> gid >> home >> user >> logname >> cwd;
  uint32_t first = server->uidRangeFirst();
  EXPECT_GE(strtoul(uid.c_str(), nullptr, 10), first);
  EXPECT_LT(strtoul(uid.c_str(), nullptr, 10), first + RunnerdFixture::UIDS);
  EXPECT_EQ(gid, uid);
  EXPECT_EQ(home, std::string(server->dir().cStr()) + "/state/homes/" + uid);
  EXPECT_EQ(user, "alice");
  EXPECT_EQ(logname, "alice");
  EXPECT_EQ(cwd, home) << "the home is the default working directory";

  struct stat info;
  ASSERT_EQ(stat(home.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0700u);
  EXPECT_EQ(info.st_uid, strtoul(uid.c_str(), nullptr, 10));
}

TEST_P(OwnerIsolation, TheSameOwnersJobsShareTheirUidAndHome) {
  auto first = alice("id -u; echo $HOME; echo kept > $HOME/shared-" + std::string(executor()));
  ASSERT_EQ(first.status, 0) << first.err;
  auto second = alice("id -u; echo $HOME; cat $HOME/shared-" + std::string(executor()));
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(second.out, first.out + "kept\n");
}

TEST_P(OwnerIsolation, AnotherOwnersJobCannotReadItsEnvironmentOrMemory) {
  auto victim = startVictim();
  auto pid = std::to_string(victim.pid);

  auto environ = alice("cat /proc/" + pid + "/environ");
  EXPECT_NE(environ.status, 0);
  EXPECT_EQ(environ.out.find("hunter2"), std::string::npos);
  EXPECT_NE(environ.out.find("Permission denied"), std::string::npos) << environ.out;

  auto mem = alice(attack + " mem " + pid);
  EXPECT_EQ(mem.status, 1) << mem.out << mem.err;
  EXPECT_EQ(mem.out.rfind("denied: open mem:", 0), 0u) << mem.out;

  auto ptrace = alice(attack + " ptrace " + pid);
  EXPECT_EQ(ptrace.status, 1) << ptrace.out << ptrace.err;
  EXPECT_EQ(ptrace.out, "denied: ptrace: Operation not permitted\n");

  expectUntouched(victim);
  stop(victim);
}

TEST_P(OwnerIsolation, AnotherOwnersJobCannotSignalIt) {
  auto victim = startVictim();
  auto pid = std::to_string(victim.pid);
  for (auto signal : {"STOP", "KILL", "TERM"}) {
    auto kill = alice(std::string("kill -") + signal + " " + pid);
    EXPECT_NE(kill.status, 0) << signal;
    EXPECT_NE(kill.out.find("Operation not permitted"), std::string::npos) << signal << kill.out;
  }
  expectUntouched(victim);
  stop(victim);
  auto status = runctl(*server, {"status", victim.id.c_str()}, as("bob"));
  EXPECT_EQ(statusField(status.out, "State"), "stopped") << status.out;
}

TEST_P(OwnerIsolation, AnotherOwnersJobCannotTakeOrForgeItsOutput) {
  auto victim = startVictim();
  auto pid = std::to_string(victim.pid);

  auto getfd = alice(attack + " getfd " + pid + " 1");
  EXPECT_EQ(getfd.status, 1) << getfd.out << getfd.err;
  EXPECT_EQ(getfd.out, "denied: pidfd_getfd: Operation not permitted\n");

  auto through = alice("echo forged >> /proc/" + pid + "/fd/1");
  EXPECT_NE(through.status, 0);
  auto truncate = alice(": > /proc/" + pid + "/fd/1");
  EXPECT_NE(truncate.status, 0);

  expectUntouched(victim);
  stop(victim);
}

TEST_P(OwnerIsolation, AnotherOwnersJobCannotWriteOrReadItsHome) {
  auto victim = startVictim();
  auto plant = alice("mkdir -p " + victim.home + "/.local/lib && echo planted");
  EXPECT_NE(plant.status, 0);
  EXPECT_EQ(plant.out.find("planted"), std::string::npos);
  auto write = alice("echo x > " + victim.home + "/usercustomize.py");
  EXPECT_NE(write.status, 0);
  auto list = alice("ls " + victim.home);
  EXPECT_NE(list.status, 0);
  // Nor anyone's: the homes directory is not listable.
  auto homes = alice("ls " + victim.home + "/..");
  EXPECT_NE(homes.status, 0);
  EXPECT_FALSE(exists(victim.home + "/usercustomize.py"));
  expectUntouched(victim);
  stop(victim);
}

TEST_P(OwnerIsolation, AnotherOwnersJobCannotSeeItsTmpOrShm) {
  auto victim = startVictim();
  auto list = alice("ls -A /tmp /var/tmp /dev/shm /run/lock");
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(list.out, "/dev/shm:\n\n/run/lock:\n\n/tmp:\n\n/var/tmp:\n");
  auto read = alice("cat /tmp/bob-file /dev/shm/bob-shm");
  EXPECT_NE(read.status, 0);
  EXPECT_EQ(read.out,
            "cat: /tmp/bob-file: No such file or directory\n"
            "cat: /dev/shm/bob-shm: No such file or directory\n");
  // Nor does the host.
  EXPECT_FALSE(exists("/var/tmp/bob-var"));
  EXPECT_FALSE(exists("/tmp/bob-file"));
  EXPECT_FALSE(exists("/dev/shm/bob-shm"));
  // bob's own job does see them: they are private, not missing.
  auto pid = std::to_string(victim.pid);
  auto own = runctl(*server,
                    {"run", "--executor", executor(), "--", "sh", "-c",
                     kj::StringPtr(("cat /proc/" + pid + "/root/tmp/bob-file").c_str())},
                    as("bob"));
  EXPECT_EQ(own.out, "bob-tmp\n") << own.err;
  expectUntouched(victim);
  stop(victim);
}

TEST_P(OwnerIsolation, AnotherOwnersJobCannotReachItsKeysOrSharedMemory) {
  auto secrets = runctl(*server,
                        {"start", "--executor", executor(), "--", "sh", "-c",
                         kj::StringPtr((attack + " key-put bob-key s3cr3t && " + attack +
                                        " shm-put 0x5eed bob-shm-secret && echo ready; exec sleep 1000")
                                           .c_str())},
                        as("bob"));
  ASSERT_EQ(secrets.status, 0) << secrets.err;
  auto id = secrets.out.substr(0, secrets.out.size() - 1);
  std::string out;
  for (int i = 0; i < 500 && out.find("ready") == std::string::npos; ++i) {
    out = runctl(*server, {"logs", id.c_str()}, as("bob")).out;
    usleep(10000);
  }
  ASSERT_EQ(out, "succeeded\nsucceeded\nready\n");

  auto key = alice(attack + " key-get bob-key");
  EXPECT_EQ(key.status, 1) << key.out;
  EXPECT_EQ(key.out.find("s3cr3t"), std::string::npos) << key.out;
  auto shm = alice(attack + " shm-get 0x5eed");
  EXPECT_EQ(shm.status, 1) << shm.out;
  EXPECT_EQ(shm.out, "denied: shmget: No such file or directory\n");
  // Squatting the key does not reach bob's segment either.
  auto squat = alice(attack + " shm-put 0x5eed alice-was-here");
  EXPECT_EQ(squat.status, 0) << squat.out;
  // And the host has neither.
  EXPECT_LT(shmget(0x5eed, 0, 0), 0);
  auto stopped = runctl(*server, {"stop", "--grace", "0s", id.c_str()}, as("bob"));
  EXPECT_EQ(stopped.status, 0) << stopped.err;
}

TEST_P(OwnerIsolation, AnIsolatedJobHasAPrivateTmpToo) {
  auto run = runctl(*server,
                    {"run", "--executor", executor(), "--isolate", "--", "sh", "-c",
                     "echo $$; echo x > /tmp/isolated-file && ls -A /tmp /dev/shm"},
                    as("alice"));
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "1\n/dev/shm:\n\n/tmp:\nisolated-file\n");
  EXPECT_FALSE(exists("/tmp/isolated-file"));
}

TEST_P(OwnerIsolation, MemoryLeftInShmIsFreedWhenTheJobEnds) {
  uint64_t before = hostShmemBytes();
  auto fill = alice("head -c 256M /dev/zero > /dev/shm/fill && echo filled");
  ASSERT_EQ(fill.status, 0) << fill.err;
  EXPECT_EQ(fill.out, "filled\n");
  // The job has ended; its /dev/shm goes with its mount namespace, on a thread of runnerd's.
  uint64_t after = hostShmemBytes();
  for (int i = 0; i < 500 && after > before + 128 * MIB; ++i) {
    usleep(10000);
    after = hostShmemBytes();
  }
  EXPECT_LT(after, before + 128 * MIB) << "before " << before / MIB << " MiB, after "
                                       << after / MIB << " MiB";
}

INSTANTIATE_TEST_SUITE_P(Executors, OwnerIsolation, ::testing::Values("local", "cgroup"));

// Pages in a job's /dev/shm are the job's memory: they count against its --memory limit.
TEST(OwnerIsolationLimits, ShmCountsAgainstTheMemoryLimit) {
  if (!cannotRunHere().empty()) GTEST_SKIP() << cannotRunHere();
  if (!exists("/sys/fs/cgroup/memory/cgroup.procs") && !exists("/sys/fs/cgroup/memory.max")) {
    GTEST_SKIP() << "no memory cgroup controller on this host";
  }
  RunnerdFixture server;
  auto run = runctl(server, {"run", "--executor", "cgroup", "--memory", "32M", "--", "sh", "-c",
                             "echo started; head -c 128M /dev/zero > /dev/shm/fill; echo wrote $?"});
  ASSERT_EQ(run.out.rfind("started\n", 0), 0u) << run.status << " " << run.out << run.err;
  // The OOM killer ended the job, or the write failed: either way the job could not hold 128M
  // in its /dev/shm under a 32M limit.
  bool oomKilled =
      run.status == 128 + SIGKILL && run.err.find("OOM killer") != std::string::npos;
  bool writeFailed = run.out.find("wrote ") != std::string::npos &&
                     run.out.find("wrote 0\n") == std::string::npos;
  EXPECT_TRUE(oomKilled || writeFailed) << run.status << " " << run.out << run.err;
}

// The local executor stops the whole job, whatever session or process group its processes are
// in, and kills what the main process leaves behind.
class LocalEscapees : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cannotRunHere().empty()) GTEST_SKIP() << cannotRunHere();
  }
};

TEST_F(LocalEscapees, SetsidAndDoubleForkDieAtTheEnd) {
  RunnerdFixture server;
  auto run = runctl(server, {"run", "--executor", "local", "--", "sh", "-c",
                             "setsid sleep 1000 & echo $!; "
                             "(setsid sh -c 'echo $$; exec sleep 1001' &); sleep 0.2"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::istringstream pids(run.out);
  pid_t setsid = 0, doubleForked = 0;
  pids >> setsid >> doubleForked;
  ASSERT_GT(setsid, 0) << run.out;
  ASSERT_GT(doubleForked, 0) << run.out;
  EXPECT_TRUE(waitUntilEnded(setsid));
  EXPECT_TRUE(waitUntilEnded(doubleForked));
}

TEST_F(LocalEscapees, SetsidAndDoubleForkDieWithAStop) {
  RunnerdFixture server;
  auto started = runctl(server, {"start", "--executor", "local", "--", "sh", "-c",
                                 "setsid sleep 1000 & echo $!; "
                                 "(setsid sh -c 'echo $$; exec sleep 1001' &); sleep 1000"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = started.out.substr(0, started.out.size() - 1);
  std::string out;
  for (int i = 0; i < 500 && std::count(out.begin(), out.end(), '\n') < 2; ++i) {
    out = runctl(server, {"logs", id.c_str()}).out;
    usleep(10000);
  }
  std::istringstream pids(out);
  pid_t setsid = 0, doubleForked = 0;
  pids >> setsid >> doubleForked;
  ASSERT_GT(setsid, 0) << out;
  ASSERT_GT(doubleForked, 0) << out;
  EXPECT_FALSE(processEnded(setsid));
  EXPECT_FALSE(processEnded(doubleForked));

  auto stopped = runctl(server, {"stop", "--grace", "1s", id.c_str()});
  EXPECT_EQ(stopped.status, 0) << stopped.err;
  EXPECT_TRUE(waitUntilEnded(setsid));
  EXPECT_TRUE(waitUntilEnded(doubleForked));
}

}  // namespace
}  // namespace runner

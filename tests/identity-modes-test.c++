// Who jobs run as, as runnerd's flags choose it: dynamic uids that survive a restart and run out
// with a clear error, uid ranges refused at start-up, local accounts, and the uid a job ran as in
// `runctl status` and its JSON.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <pwd.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

extern char** environ;

namespace runner {
namespace {

using testing::runctl;
using testing::RunctlOptions;
using testing::RunnerdFixture;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool isOneLine(const std::string& text) {
  return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

RunctlOptions as(kj::StringPtr user) {
  RunctlOptions options;
  options.user = user;
  return options;
}

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

std::string cannotRunHere() {
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
    return reason->cStr();
  }
  return "";
}

#define SKIP_UNLESS_HOST_CAN_RUN()   \
  if (!cannotRunHere().empty()) {    \
    GTEST_SKIP() << cannotRunHere(); \
  }

// `id -u` of a job of `user`.
std::string uidOfAJob(RunnerdFixture& server, kj::StringPtr user) {
  auto run = runctl(server, {"run", "--", "id", "-u"}, as(user));
  KJ_ASSERT(run.status == 0, run.err);
  return run.out.substr(0, run.out.size() - 1);
}

// runnerd run to its end with the certificates of `server` and `flags`, in a state directory
// of its own: what it wrote to stderr and how it exited.
struct Exited {
  int status;
  std::string err;
};
Exited runRunnerd(RunnerdFixture& server, std::vector<std::string> flags) {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_ASSERT(srcdir != nullptr);
  std::string dir = server.dir().cStr();
  std::vector<std::string> args = {std::string(srcdir) + "/runner/runner/runnerd",
                                   "--listen=127.0.0.1:0",
                                   "--tls-cert=" + dir + "/server.pem",
                                   "--tls-key=" + dir + "/server-key.pem",
                                   "--tls-ca=" + dir + "/ca.pem",
                                   "--log-dir=" + dir + "/refused-logs",
                                   "--state-dir=" + dir + "/refused-state"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  auto errPath = dir + "/refused.stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  KJ_ASSERT(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  // A runnerd that starts serving is a failure of the test: stop it after a while.
  int status = 0;
  for (int i = 0; i < 500; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return {status, readFile(errPath)};
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return {-1, readFile(errPath)};
}

TEST(IdentityModes, AnOwnerKeepsItsUidAcrossARestart) {
  SKIP_UNLESS_HOST_CAN_RUN();
  RunnerdFixture server;
  auto alice = uidOfAJob(server, "alice");
  auto bob = uidOfAJob(server, "bob");
  EXPECT_NE(alice, bob);
  server.stop();
  server.start();
  // bob first this time: the store decides, not the order in which owners come.
  EXPECT_EQ(uidOfAJob(server, "bob"), bob);
  EXPECT_EQ(uidOfAJob(server, "alice"), alice);
  EXPECT_NE(uidOfAJob(server, "admin"), alice);
}

TEST(IdentityModes, StatusAndJsonCarryTheUid) {
  SKIP_UNLESS_HOST_CAN_RUN();
  RunnerdFixture server;
  auto uid = uidOfAJob(server, "alice");
  auto started = runctl(server, {"start", "--", "true"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = started.out.substr(0, started.out.size() - 1);
  auto status = runctl(server, {"status", id.c_str()}, as("bob"));
  EXPECT_EQ(statusField(status.out, "User"), "uid " + uid + ", gid " + uid) << status.out;
  auto json = runctl(server, {"status", "--json", id.c_str()});
  EXPECT_NE(json.out.find("\"uid\":" + uid), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"gid\":" + uid), std::string::npos) << json.out;
  auto list = runctl(server, {"list", "--json"});
  EXPECT_NE(list.out.find("\"uid\":" + uid), std::string::npos) << list.out;
}

TEST(IdentityModes, ARangeThatRunsOutFailsTheStartWithOneLine) {
  SKIP_UNLESS_HOST_CAN_RUN();
  uint32_t only = 2147000000u + uint32_t(getpid()) % 400000;
  auto range = kj::str("--uid-range=", only, "-", only);
  kj::StringPtr flags[] = {range};
  RunnerdFixture server(flags);
  EXPECT_EQ(uidOfAJob(server, "alice"), std::to_string(only));
  auto refused = runctl(server, {"run", "--", "echo", "never"}, as("bob"));
  EXPECT_EQ(refused.status, 125);
  EXPECT_EQ(refused.out, "");
  EXPECT_TRUE(isOneLine(refused.err)) << refused.err;
  EXPECT_NE(refused.err.find(kj::str("no uid is left for a new owner in runnerd's uid range ",
                                     only, "-", only, " (--uid-range)")
                                 .cStr()),
            std::string::npos)
      << refused.err;
  server.waitForLog("cannot give owner bob a uid");
  // Nothing of the start is left: no job, no output file.
  auto list = runctl(server, {"list", "--all"}, as("bob"));
  EXPECT_EQ(list.out.find("never"), std::string::npos) << list.out;
  auto logs = std::string(server.dir().cStr()) + "/logs";
  EXPECT_EQ(system(("test $(ls '" + logs + "' | grep -c '\\.log$') -eq 1").c_str()), 0);
  // alice still runs.
  EXPECT_EQ(uidOfAJob(server, "alice"), std::to_string(only));
}

TEST(IdentityModes, OverlappingRangesAreRefusedAtStartUp) {
  SKIP_UNLESS_HOST_CAN_RUN();
  RunnerdFixture server;
  auto daemon = getpwnam("daemon");
  if (daemon != nullptr) {
    auto first = std::to_string(daemon->pw_uid);
    auto passwd = runRunnerd(server, {"--uid-range=" + first + "-" + first});
    EXPECT_TRUE(WIFEXITED(passwd.status) && WEXITSTATUS(passwd.status) != 0) << passwd.err;
    EXPECT_TRUE(isOneLine(passwd.err)) << passwd.err;
    EXPECT_NE(passwd.err.find("the uid range " + first + "-" + first + " overlaps the account daemon"),
              std::string::npos)
        << passwd.err;
  }
  auto systemd = runRunnerd(server, {"--uid-range=61000-61200"});
  EXPECT_TRUE(WIFEXITED(systemd.status) && WEXITSTATUS(systemd.status) != 0) << systemd.err;
  EXPECT_TRUE(isOneLine(systemd.err)) << systemd.err;
  EXPECT_NE(systemd.err.find("overlaps systemd's dynamic users (61184-65519)"), std::string::npos)
      << systemd.err;

  auto both = runRunnerd(server, {"--run-as=runner-jobs", "--users=dynamic"});
  EXPECT_TRUE(WIFEXITED(both.status) && WEXITSTATUS(both.status) != 0) << both.err;
  EXPECT_NE(both.err.find("--run-as (every job as one user) and --users exclude each other"),
            std::string::npos)
      << both.err;

  // The range of the fixture's runnerd, which is running: another runnerd may not use it.
  auto first = std::to_string(server.uidRangeFirst());
  auto taken = runRunnerd(server, {"--uid-range=" + first + "-" + first});
  EXPECT_TRUE(WIFEXITED(taken.status) && WEXITSTATUS(taken.status) != 0) << taken.err;
  EXPECT_TRUE(isOneLine(taken.err)) << taken.err;
  EXPECT_NE(taken.err.find(", which the runnerd with state directory " +
                           std::string(server.dir().cStr()) + "/state is using"),
            std::string::npos)
      << taken.err;

  // A state directory that others may write: they could swap the homes.
  auto open = std::string(server.dir().cStr()) + "/open-state";
  ASSERT_EQ(mkdir(open.c_str(), 0777), 0);
  ASSERT_EQ(chmod(open.c_str(), 0777), 0);
  auto writable = runRunnerd(server, {"--state-dir=" + open});
  EXPECT_TRUE(WIFEXITED(writable.status) && WEXITSTATUS(writable.status) != 0) << writable.err;
  EXPECT_NE(writable.err.find("--state-dir " + open +
                              " must be owned by runnerd's user and writable by it alone (it is "
                              "owned by uid 0, mode 0777)"),
            std::string::npos)
      << writable.err;

  // Below a directory that others may change: they could swap the state directory itself.
  auto shared = std::string(server.dir().cStr()) + "/shared";
  ASSERT_EQ(mkdir(shared.c_str(), 0777), 0);
  ASSERT_EQ(chmod(shared.c_str(), 0777), 0);
  auto below = runRunnerd(server, {"--state-dir=" + shared + "/state"});
  EXPECT_TRUE(WIFEXITED(below.status) && WEXITSTATUS(below.status) != 0) << below.err;
  EXPECT_NE(below.err.find("--state-dir " + shared + "/state is below " + shared +
                           ", which another user can change (owned by uid 0, group 0, mode 0777)"),
            std::string::npos)
      << below.err;

  // A state directory in /tmp, of which every job has a private one: no job would find its home.
  char hidden[] = "/tmp/identity-modes-test.XXXXXX";
  ASSERT_NE(mkdtemp(hidden), nullptr);
  auto inTmp = runRunnerd(server, {std::string("--state-dir=") + hidden});
  EXPECT_TRUE(WIFEXITED(inTmp.status) && WEXITSTATUS(inTmp.status) != 0) << inTmp.err;
  EXPECT_NE(inTmp.err.find(std::string("jobs could not reach their homes in ") + hidden +
                           "/homes: every job has a private /tmp; choose a --state-dir elsewhere"),
            std::string::npos)
      << inTmp.err;
  EXPECT_EQ(system((std::string("rm -rf ") + hidden).c_str()), 0);

  struct BadFlag {
    std::string flag;
    std::string error;
  };
  for (auto& bad : {BadFlag{"--uid-range=10-5", "--uid-range takes FIRST-LAST"},
                    BadFlag{"--users=nobody", "--users takes dynamic or accounts"},
                    BadFlag{"--min-uid=0", "--min-uid takes a uid above 0"},
                    BadFlag{"--run-as=", "--run-as needs a user name"},
                    BadFlag{"--max-connections=0", "--max-connections takes a number from 1"},
                    BadFlag{"--max-connections-per-user=x", "--max-connections-per-user takes"},
                    BadFlag{"--max-watches-per-user=-1", "--max-watches-per-user takes"},
                    BadFlag{"--idle-timeout=0", "--idle-timeout takes a whole number of seconds"},
                    BadFlag{"--max-output=0", "--max-output takes a size in bytes above 0"},
                    BadFlag{"--max-output=lots", "--max-output takes a size in bytes above 0"},
                    BadFlag{"--max-running-per-user=1000000",
                            "one user could hold 12001056 descriptors"}}) {
    auto refused = runRunnerd(server, {bad.flag});
    EXPECT_TRUE(WIFEXITED(refused.status) && WEXITSTATUS(refused.status) != 0) << refused.err;
    EXPECT_NE(refused.err.find(bad.error), std::string::npos) << bad.flag << ": " << refused.err;
  }
}

TEST(IdentityModes, AccountsModeRunsAnOwnerAsItsAccountAndRefusesTheRest) {
  SKIP_UNLESS_HOST_CAN_RUN();
  auto account = getpwnam("runner-jobs");
  ASSERT_NE(account, nullptr);
  uint32_t uid = account->pw_uid;
  // runner-jobs is a system account: let this server accept it.
  auto minUid = kj::str("--min-uid=", uid);
  kj::StringPtr flags[] = {"--users=accounts", minUid};
  RunnerdFixture server(flags);
  server.issue("runner-jobs", -60, 3600);
  EXPECT_EQ(uidOfAJob(server, "runner-jobs"), std::to_string(uid));

  auto refused = runctl(server, {"run", "--", "echo", "never"}, as("alice"));
  EXPECT_EQ(refused.status, 125);
  EXPECT_TRUE(isOneLine(refused.err)) << refused.err;
  EXPECT_NE(refused.err.find("there is no local account 'alice' to run the job as"),
            std::string::npos)
      << refused.err;
  server.issue("root", -60, 3600);
  auto root = runctl(server, {"run", "--", "echo", "never"}, as("root"));
  EXPECT_EQ(root.status, 125);
  EXPECT_NE(root.err.find("refusing to run a job as 'root': it is root"), std::string::npos)
      << root.err;
  auto list = runctl(server, {"list", "--all"}, as("alice"));
  EXPECT_EQ(list.out.find("never"), std::string::npos) << list.out;
}

}  // namespace
TEST(IdentityModes, StateAndLogDirectoriesUnderANewDirectoryStart) {
  SKIP_UNLESS_HOST_CAN_RUN();
  // The log directory is made first; the directory above both must still let jobs reach their
  // homes in the state directory.
  mkdir("/var/lib/runner-tests", 0755);
  char tmpl[] = "/var/lib/runner-tests/nested.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  ASSERT_EQ(chmod(tmpl, 0755), 0);
  std::string top = tmpl;
  auto logs = kj::str("--log-dir=", top, "/new/logs");
  auto state = kj::str("--state-dir=", top, "/new/state");
  kj::StringPtr flags[] = {logs, state};
  {
    RunnerdFixture server(flags);
    EXPECT_EQ(uidOfAJob(server, "alice").empty(), false);
    struct stat st;
    ASSERT_EQ(stat((top + "/new").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
  }
  EXPECT_EQ(system(("rm -rf " + top).c_str()), 0);
}

}  // namespace runner

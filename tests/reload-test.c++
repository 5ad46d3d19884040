// runnerd's SIGHUP reload through a real runnerd: a revoked user is refused from the reload on
// while others connect and connections already open keep working; certificates renewed in place
// are served; a configuration that does not load is refused with one line and the one in force
// stays. The --config file: every flag of runnerd --help is a key of it, the command line
// overrides it, a bad line stops runnerd at start with the file and line, and SIGHUP reads it
// again.

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "certs/authority.h"
#include "certs/credential-files.h"
#include "tests/e2e-support.h"

namespace runner::testing {
namespace {

bool logHas(RunnerdFixture& f, kj::StringPtr text) {
  return strstr(f.serverLog().cStr(), text.cStr()) != nullptr;
}

// Whoami over a new connection as `user`: its answer, or the error it failed with.
kj::String whoami(RunnerdFixture& f, kj::StringPtr user) {
  kj::String answer;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 auto client = f.connect(user);
                 answer =
                     kj::str(client->manager.whoamiRequest().send().wait(f.io.waitScope).getUser());
               })) {
    return kj::str("failed: ", e->getDescription());
  }
  return answer;
}

// runnerd reads its files again as its daemon user once it has dropped root: the key must be
// readable by it (root's alone, it can only be read at start).
void letTheDaemonReadTheKey(RunnerdFixture& f) {
  KJ_SYSCALL(chmod(f.keyPath("server").cStr(), 0644));
}

// Whether `user` is an admin, as runnerd tells the user over a new connection.
bool isAdmin(RunnerdFixture& f, kj::StringPtr user) {
  auto client = f.connect(user);
  return client->manager.whoamiRequest().send().wait(f.io.waitScope).getAdmin();
}

kj::String runnerdBinary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test through bazel");
  return kj::str(srcdir, "/runner/runner/runnerd");
}

// Runs runnerd with `args` (to its end: it must fail or print and exit); its exit status and
// what it wrote to stdout and stderr.
struct Finished {
  int status;
  std::string output;
};
Finished runRunnerd(kj::StringPtr args) {
  auto command = kj::str(runnerdBinary(), " ", args, " 2>&1");
  FILE* pipe = popen(command.cStr(), "r");
  KJ_ASSERT(pipe != nullptr, strerror(errno));
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

// A directory for a configuration file, made before the fixture that reads it, readable by
// runnerd's daemon user (a reload reads the file as that user).
class ConfigDir {
 public:
  ConfigDir() {
    mkdir("/var/lib/runner-tests", 0755);
    auto tmpl = kj::str("/var/lib/runner-tests/config.XXXXXX");
    KJ_ASSERT(mkdtemp(tmpl.begin()) != nullptr, strerror(errno));
    KJ_SYSCALL(chmod(tmpl.cStr(), 0755));
    dir = kj::mv(tmpl);
    path = kj::str(dir, "/runnerd.conf");
  }
  ~ConfigDir() noexcept(false) {
    unlink(path.cStr());
    rmdir(dir.cStr());
  }
  KJ_DISALLOW_COPY(ConfigDir);
  void write(kj::StringPtr text) { certs::writeFile(path, text, 0644, true); }
  kj::String flag() const { return kj::str("--config=", path); }

  kj::String dir, path;
};

// Sends SIGHUP and waits for runnerd to log the outcome (`text`), after `before` lines of it.
void reload(RunnerdFixture& f, kj::StringPtr text) {
  size_t before = f.serverLog().size();
  KJ_SYSCALL(kill(f.pid(), SIGHUP));
  for (int i = 0; i < 1000; i++) {
    auto log = f.serverLog();
    if (strstr(log.cStr() + before, text.cStr()) != nullptr) return;
    usleep(10000);
  }
  auto log = f.serverLog();
  KJ_FAIL_ASSERT("runnerd did not log this after SIGHUP", text, log);
}

TEST(Reload, ARevokedUserIsRefusedAfterAReloadWhileOthersConnectAndOpenConnectionsStay) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  letTheDaemonReadTheKey(f);
  EXPECT_EQ(whoami(f, "bob"), "bob");
  auto open = f.connect("bob");
  EXPECT_EQ(open->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "bob");

  f.revoke("bob");
  // Revoked on disk, not yet for runnerd.
  EXPECT_EQ(whoami(f, "bob"), "bob");
  reload(f, "reloaded on SIGHUP");
  EXPECT_TRUE(logHas(f, "reload: 1 certificates revoked (before: 0 certificates revoked)"))
      << f.serverLog().cStr();

  auto refused = whoami(f, "bob");
  EXPECT_TRUE(refused.startsWith("failed: ")) << refused.cStr();
  f.waitForLog("failed: client certificate is revoked (listed in --tls-crl)");
  EXPECT_EQ(whoami(f, "alice"), "alice");
  EXPECT_EQ(whoami(f, "admin"), "admin");
  // Established before the reload, it keeps its identity.
  EXPECT_EQ(open->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "bob");
}

TEST(Reload, ACertificateRenewedInPlaceIsServedAndLogged) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto ca = certs::readAuthority(f.dir());
  kj::StringPtr dns[] = {"localhost"};
  kj::StringPtr ips[] = {"127.0.0.1"};
  certs::writeCredentials(f.dir(), "server",
                          ca.issueServer({"localhost", dns, ips}, certs::Validity::forDays(2)),
                          true);
  letTheDaemonReadTheKey(f);
  reload(f, "reloaded on SIGHUP");
  EXPECT_TRUE(logHas(f, "(changed); CA CN = test CA (unchanged)")) << f.serverLog().cStr();
  EXPECT_EQ(whoami(f, "alice"), "alice");
}

TEST(Reload, WhatDoesNotLoadIsRefusedWithOneLineAndTheConfigurationInForceStays) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto crl = kj::str(f.dir(), "/crl.pem");
  auto goodCrl = certs::readFile(crl);

  // A key only root may read, as a key usually is: read at start, not on a reload.
  reload(f, "reload on SIGHUP refused: cannot read TLS key ");
  EXPECT_TRUE(logHas(f, ": Permission denied; the configuration in force stays"))
      << f.serverLog().cStr();
  EXPECT_EQ(whoami(f, "alice"), "alice");

  letTheDaemonReadTheKey(f);
  certs::writeFile(crl, "not a list\n", 0644, true);
  reload(f, kj::str("reload on SIGHUP refused: revocation list ", crl,
                    " is not a PEM certificate revocation list; the configuration in force stays"));
  EXPECT_EQ(whoami(f, "bob"), "bob");

  // A list another CA signed.
  auto other = certs::Authority::create("other CA", certs::Validity::forDays(1));
  certs::writeFile(crl, other.issueCrl(nullptr, nullptr, certs::Validity::forDays(1)).crlPem, 0644,
                   true);
  reload(f, kj::str("reload on SIGHUP refused: revocation list ", crl, " is not signed by the CA"));

  // A server certificate from another CA.
  kj::StringPtr dns[] = {"localhost"};
  certs::writeCredentials(
      f.dir(), "server",
      other.issueServer({"localhost", dns, nullptr}, certs::Validity::forDays(1)), true);
  letTheDaemonReadTheKey(f);
  certs::writeFile(crl, goodCrl, 0644, true);
  reload(f, "reload on SIGHUP refused: ");
  EXPECT_EQ(whoami(f, "alice"), "alice");
  EXPECT_TRUE(kill(f.pid(), 0) == 0) << "runnerd is gone";
}

// A value each flag takes; a flag new to runnerd --help that has none here fails the test, so
// that the file is checked for every key.
const std::map<std::string, std::string> SAMPLE_VALUES = {
    {"admin", "carol"},
    {"cgroup-parent", "runner"},
    {"executor", "local"},
    {"executor-socket", "gpu=/run/gpu.sock"},
    {"grace", "3"},
    {"idle-timeout", "60"},
    {"listen", "127.0.0.1:0"},
    {"log-dir", "/var/log/runner"},
    {"max-connections", "10"},
    {"max-connections-per-user", "5"},
    {"max-output", "1G"},
    {"retain-for", "7d"},
    {"retain-jobs", "1000"},
    {"max-running-per-user", "8"},
    {"max-stored-bytes", "64M"},
    {"max-stored-bytes-per-user", "1M"},
    {"max-stored-per-user", "100"},
    {"max-watches-per-user", "16"},
    {"metrics-listen", "127.0.0.1:0"},
    {"min-uid", "1000"},
    {"run-as", "nobody"},
    {"state-dir", "/var/lib/runner"},
    {"tls-ca", "/etc/runner/ca.pem"},
    {"tls-cert", "/etc/runner/server.pem"},
    {"tls-crl", "/etc/runner/crl.pem"},
    {"tls-key", "/etc/runner/server-key.pem"},
    {"uid-range", "2000000000-2000000999"},
    {"users", "dynamic"},
};

TEST(ConfigFile, EveryFlagOfRunnerdHelpIsAKeyOfTheFile) {
  auto help = runRunnerd("--help");
  ASSERT_EQ(help.status, 0) << help.output;
  // "    --name=<title>": a flag that takes a value.
  std::vector<std::string> keys;
  for (size_t at = 0; (at = help.output.find("\n    --", at)) != std::string::npos;) {
    at += strlen("\n    --");
    size_t end = help.output.find("=<", at);
    size_t line = help.output.find('\n', at);
    if (end == std::string::npos || end > line) continue;
    auto key = help.output.substr(at, end - at);
    if (key != "config") keys.push_back(key);
  }
  ASSERT_GE(keys.size(), SAMPLE_VALUES.size()) << help.output;

  ConfigDir config;
  // All but --tls-cert: runnerd then stops where the settings are complete and checked, after
  // every line of the file was set.
  std::string text = "# every key\n";
  for (auto& key : keys) {
    auto sample = SAMPLE_VALUES.find(key);
    ASSERT_NE(sample, SAMPLE_VALUES.end()) << "no sample value for --" << key;
    if (key == "tls-cert") continue;
    text += key + " = " + sample->second + "\n";
  }
  config.write(text.c_str());
  auto run = runRunnerd(config.flag());
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.output.find(": --tls-cert, --tls-key and --tls-ca are required\n"),
            std::string::npos)
      << text << run.output;
  EXPECT_EQ(run.output.find(config.path.cStr()), std::string::npos) << text << run.output;
}

TEST(ConfigFile, ABadLineStopsRunnerdAtStartWithOneLineNamingFileAndLine) {
  ConfigDir config;
  config.write("# runnerd\nlisten = 127.0.0.1:0\nmax-output = lots\n");
  auto bad = runRunnerd(config.flag());
  EXPECT_EQ(bad.status, 1);
  auto expected = kj::str(": ", config.path,
                          ":3: --max-output takes a size in bytes above 0, with an optional K, "
                          "M, G or T suffix\n");
  EXPECT_TRUE(kj::StringPtr(bad.output.c_str()).endsWith(expected)) << bad.output;
  EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;

  config.write("\nlisen = 127.0.0.1:0\n");
  auto unknown = runRunnerd(config.flag());
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.output.find(kj::str(config.path, ":2: unknown key lisen").cStr()),
            std::string::npos)
      << unknown.output;
  EXPECT_EQ(std::count(unknown.output.begin(), unknown.output.end(), '\n'), 1) << unknown.output;

  auto missing = runRunnerd("--config=/nonexistent/runnerd.conf");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find(": cannot read /nonexistent/runnerd.conf: No such file or "
                                "directory\n"),
            std::string::npos)
      << missing.output;
}

TEST(ConfigFile, TheCommandLineOverridesTheFileAndTheFileSetsTheRest) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  ConfigDir config;
  // The fixture's command line gives --listen (a free port) and --admin=admin; this address
  // cannot be listened on, and bob is an admin only if the file's admins were kept.
  config.write("listen = 192.0.2.1:7443\nadmin = bob\nadmin = alice\nmax-output = 1M\n");
  kj::String flag = config.flag();
  kj::StringPtr flags[] = {flag};
  RunnerdFixture f(flags);
  EXPECT_TRUE(f.address().startsWith("127.0.0.1:")) << f.address().cStr();
  EXPECT_TRUE(isAdmin(f, "admin"));
  EXPECT_FALSE(isAdmin(f, "bob"));
  EXPECT_FALSE(isAdmin(f, "alice"));
  EXPECT_TRUE(logHas(f, "output per job 1048576 bytes")) << f.serverLog().cStr();
}

TEST(Reload, SighupReadsTheConfigFileAgainAndKeepsItWhenItDoesNotParse) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  ConfigDir config;
  config.write("admin = admin\n");
  kj::String flag = config.flag();
  kj::StringPtr flags[] = {flag};
  kj::StringPtr fromTheFile[] = {"admin"};
  RunnerdFixture f(flags, fromTheFile);
  letTheDaemonReadTheKey(f);
  EXPECT_TRUE(isAdmin(f, "admin"));
  EXPECT_FALSE(isAdmin(f, "bob"));

  config.write("admin = admin\nadmin = bob   # on call this week\n");
  reload(f, "reloaded on SIGHUP");
  EXPECT_TRUE(logHas(f, "reload: admins now admin, bob; added bob")) << f.serverLog().cStr();
  EXPECT_TRUE(isAdmin(f, "bob"));

  config.write("admin = admin\nadmin\n");
  reload(f, kj::str("reload on SIGHUP refused: ", config.path,
                    ":2: admin has no value; the configuration in force stays"));
  EXPECT_TRUE(isAdmin(f, "bob"));
  EXPECT_TRUE(isAdmin(f, "admin"));
  EXPECT_TRUE(kill(f.pid(), 0) == 0) << "runnerd is gone";
}

}  // namespace
}  // namespace runner::testing

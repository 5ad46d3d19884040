// scripts/install into a temporary tree, with the binaries this test was built with: the files
// land where the layout says, the units pass systemd-analyze verify, an existing configuration is
// kept, and the installed runnerd, started as its unit starts it (after the supervisor's unit,
// under its capability bounding set, with no new privileges) from the installed configuration,
// runs a job for the installed runctl. This host has no systemd as PID 1: the units' command
// lines are run as written.

#include <errno.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctype.h>
#include <string>

namespace runner::testing {
namespace {

struct Finished {
  int status;
  std::string output;
};

// Runs `command` with sh, its stderr with its stdout.
Finished sh(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  KJ_ASSERT(pipe != nullptr, strerror(errno));
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

std::string readFile(const std::string& path) {
  auto result = sh("cat '" + path + "'");
  KJ_ASSERT(result.status == 0, path, result.output);
  return result.output;
}

// The value of `key=` in a unit file (its first line of it).
std::string unitValue(const std::string& unitText, const std::string& key) {
  size_t at = unitText.find("\n" + key + "=");
  KJ_ASSERT(at != std::string::npos, key);
  at += key.size() + 2;
  return unitText.substr(at, unitText.find('\n', at) - at);
}

std::string runfiles() {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test through bazel");
  return std::string(srcdir) + "/runner";
}

// A tree to install into, removed with what runs from it. Not in /tmp: every job has a private
// one, and the jobs reach their homes in the installed state directory.
class InstallTree {
 public:
  InstallTree() {
    mkdir("/var/lib/runner-tests", 0755);
    char tmpl[] = "/var/lib/runner-tests/install-test.XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr, strerror(errno));
    KJ_SYSCALL(chmod(tmpl, 0755));
    dir = tmpl;
    root = dir + "/root";
  }
  ~InstallTree() noexcept(false) {
    for (pid_t pid : {runnerd, supervisor}) {
      if (pid <= 0) continue;
      kill(pid, SIGTERM);
      for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) usleep(10000);
    }
    sh("rm -rf '" + dir + "'");
  }
  KJ_DISALLOW_COPY(InstallTree);

  Finished install() {
    return sh("'" + runfiles() + "/scripts/install' --prefix '" + root + "' --from-bin '" +
              runfiles() + "'");
  }

  std::string bin(const std::string& name) const { return root + "/usr/local/bin/" + name; }
  std::string unit(const std::string& name) const {
    return root + "/usr/local/lib/systemd/system/" + name;
  }
  std::string conf() const { return root + "/etc/runner/runnerd.conf"; }

  std::string dir, root;
  pid_t runnerd = 0, supervisor = 0;
};

bool haveSystemdAnalyze() {
  return access("/usr/bin/systemd-analyze", X_OK) == 0;
}

#define SKIP_UNLESS_ROOT()                                                           \
  if (geteuid() != 0) {                                                              \
    GTEST_SKIP() << "scripts/install makes root's files and runnerd starts as root"; \
  }

TEST(Install, PutsBinariesUnitsConfigurationAndDirectoriesInThePrefix) {
  SKIP_UNLESS_ROOT();
  InstallTree tree;
  auto installed = tree.install();
  ASSERT_EQ(installed.status, 0) << installed.output;
  for (auto name : {"runnerd", "runner-supervisor", "runctl", "runner-certs"}) {
    struct stat st;
    ASSERT_EQ(stat(tree.bin(name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << name;
  }
  struct stat st;
  ASSERT_EQ(stat(tree.conf().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(stat((tree.root + "/var/lib/runner").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  ASSERT_EQ(stat((tree.root + "/var/log/runner").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);

  // Every path in the installed files points into the tree.
  auto runnerd = readFile(tree.unit("runnerd.service"));
  EXPECT_EQ(unitValue(runnerd, "ExecStart"), tree.bin("runnerd") + " --config=" + tree.conf());
  EXPECT_EQ(unitValue(runnerd, "ReadWritePaths"),
            tree.root + "/var/lib/runner " + tree.root + "/var/log/runner");
  auto supervisor = readFile(tree.unit("runner-supervisor.service"));
  EXPECT_EQ(unitValue(supervisor, "ExecStart"),
            tree.bin("runner-supervisor") + " --state-dir=" + tree.root + "/var/lib/runner");
  EXPECT_EQ(unitValue(supervisor, "Delegate"), "yes");
  auto conf = readFile(tree.conf());
  EXPECT_NE(conf.find("\nstate-dir = " + tree.root + "/var/lib/runner\n"), std::string::npos)
      << conf;
  EXPECT_EQ(conf.find('@'), std::string::npos) << conf;
}

TEST(Install, TheInstalledUnitsPassSystemdAnalyzeVerify) {
  SKIP_UNLESS_ROOT();
  if (!haveSystemdAnalyze()) GTEST_SKIP() << "systemd-analyze is not installed";
  InstallTree tree;
  auto installed = tree.install();
  ASSERT_EQ(installed.status, 0) << installed.output;
  // Run in the units' directory: verify looks for the unit that runnerd.service requires beside
  // it. It checks the directives and that the commands exist; anything it says is a finding.
  auto verified = sh("cd '" + tree.root +
                     "/usr/local/lib/systemd/system' && systemd-analyze verify "
                     "./runnerd.service ./runner-supervisor.service");
  EXPECT_EQ(verified.status, 0) << verified.output;
  EXPECT_EQ(verified.output, "");

  // A unit verify finds fault with fails this check: it is not vacuous.
  auto broken =
      sh("cd '" + tree.root +
         "/usr/local/lib/systemd/system' && sed -i 's/^KillMode=mixed/KillMode=some/' "
         "runner-supervisor.service && systemd-analyze verify ./runner-supervisor.service");
  EXPECT_NE(broken.output.find("Failed to parse kill mode"), std::string::npos) << broken.output;
}

TEST(Install, AnExistingConfigurationIsKeptAndTheNewDefaultPutBeside) {
  SKIP_UNLESS_ROOT();
  InstallTree tree;
  ASSERT_EQ(tree.install().status, 0);
  ASSERT_EQ(sh("echo 'admin = alice' >> '" + tree.conf() + "'").status, 0);
  auto edited = readFile(tree.conf());
  auto again = tree.install();
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("keeping " + tree.conf()), std::string::npos) << again.output;
  EXPECT_EQ(readFile(tree.conf()), edited);
  EXPECT_EQ(readFile(tree.conf() + ".default") + "admin = alice\n", edited);
}

TEST(Install, TheInstalledRunnerdStartsAsItsUnitsSayAndRunsAJobForTheInstalledRunctl) {
  SKIP_UNLESS_ROOT();
  if (getpwnam("runner") == nullptr) {
    GTEST_SKIP() << "the user runner does not exist (scripts/install-deps creates it)";
  }
  InstallTree tree;
  auto installed = tree.install();
  ASSERT_EQ(installed.status, 0) << installed.output;

  // What an operator does next: certificates from the installed runner-certs, and the settings
  // this host needs in the installed files (a free port; a uid range of this test's own).
  auto certs = tree.root + "/etc/runner";
  auto ca = tree.dir + "/ca";
  auto runnerCerts = tree.bin("runner-certs");
  auto made =
      sh("mkdir -m 0700 '" + ca + "' && '" + runnerCerts + "' ca --out-dir '" + ca +
         "' --name 'install test CA' && '" + runnerCerts + "' server --ca-dir '" + ca +
         "' --out-dir '" + certs + "' && '" + runnerCerts + "' client --ca-dir '" + ca +
         "' --out-dir '" + ca + "' --user alice && cp '" + ca + "/ca.pem' '" + certs + "/ca.pem'");
  ASSERT_EQ(made.status, 0) << made.output;
  uint32_t first = 2146000000u + uint32_t(getpid() % 900) * 1000;
  auto range = std::to_string(first) + "-" + std::to_string(first + 999);
  ASSERT_EQ(
      sh("printf 'listen = 127.0.0.1:0\\nuid-range = " + range + "\\n' >> '" + tree.conf() + "'")
          .status,
      0);

  // The supervisor's unit first (with the uid range, as `systemctl edit` would add it), and its
  // ExecStartPost, which returns once the supervisor holds its pid file.
  auto supervisorUnit = readFile(tree.unit("runner-supervisor.service"));
  auto started = sh("setsid " + unitValue(supervisorUnit, "ExecStart") + " --uid-range=" + range +
                    " </dev/null >>'" + tree.dir + "/supervisor.log' 2>&1 & echo $!");
  tree.supervisor = atoi(started.output.c_str());
  ASSERT_GT(tree.supervisor, 0) << started.output;
  auto post = sh("timeout 10 " + unitValue(supervisorUnit, "ExecStartPost"));
  ASSERT_EQ(post.status, 0) << post.output << readFile(tree.dir + "/supervisor.log");

  // runnerd's unit, under its capability bounding set and with no new privileges.
  auto runnerdUnit = readFile(tree.unit("runnerd.service"));
  std::string caps;
  for (char c : unitValue(runnerdUnit, "CapabilityBoundingSet"))
    caps += c == ' ' ? ',' : tolower(c);
  for (size_t at; (at = caps.find("cap_")) != std::string::npos;) caps.replace(at, 4, "+");
  auto log = tree.dir + "/runnerd.log";
  started = sh("setsid setpriv --bounding-set=-all," + caps + " --no-new-privs " +
               unitValue(runnerdUnit, "ExecStart") + " </dev/null >>'" + log + "' 2>&1 & echo $!");
  tree.runnerd = atoi(started.output.c_str());
  ASSERT_GT(tree.runnerd, 0) << started.output;
  std::string port;
  for (int i = 0; i < 1000 && port.empty(); i++) {
    auto text = readFile(log);
    size_t at = text.find("listening on 127.0.0.1:");
    if (at != std::string::npos) {
      at += strlen("listening on 127.0.0.1:");
      port = text.substr(at, text.find(' ', at) - at);
      break;
    }
    ASSERT_EQ(kill(tree.runnerd, 0), 0) << "runnerd exited:\n" << text;
    usleep(10000);
  }
  auto text = readFile(log);
  ASSERT_FALSE(port.empty()) << text;
  // It found the unit's supervisor rather than starting one of its own.
  EXPECT_NE(text.find("a supervisor runs on " + tree.root + "/var/lib/runner already"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("runnerd runs as runner"), std::string::npos) << text;

  auto job =
      sh("RUNCTL_SERVER=127.0.0.1:" + port + " RUNCTL_CA='" + certs + "/ca.pem' RUNCTL_CERT='" +
         ca + "/alice.pem' RUNCTL_KEY='" + ca + "/alice-key.pem' '" + tree.bin("runctl") +
         "' run -- sh -c 'echo hello from the installed runner'");
  EXPECT_EQ(job.status, 0) << job.output << readFile(log);
  EXPECT_EQ(job.output, "hello from the installed runner\n");
}

}  // namespace
}  // namespace runner::testing

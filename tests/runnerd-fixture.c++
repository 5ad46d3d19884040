#include "tests/runnerd-fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "certs/authority.h"
#include "certs/credential-files.h"

namespace runner::testing {

namespace {

kj::String runnerdPath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test through bazel");
  return kj::str(srcdir, "/runner/runner/runnerd");
}

// Reads with read(2) until EOF: /proc files report a size of 0, which kj::File believes.
kj::String readWholeFile(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  KJ_ASSERT(fd >= 0, "cannot open", path, strerror(errno));
  kj::AutoCloseFd owned(fd);
  kj::Vector<char> text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) text.addAll(kj::arrayPtr(buffer, n));
  KJ_ASSERT(n == 0, "cannot read", path, strerror(errno));
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

}  // namespace

kj::Maybe<kj::String> cannotRunServer() {
  if (geteuid() != 0) return kj::str("runnerd switches jobs to runner-jobs, which needs root");
  if (getpwnam("runner-jobs") == nullptr) {
    return kj::str("the runner-jobs user does not exist (scripts/install-deps creates it)");
  }
  return nullptr;
}

namespace {

// Fixtures of tests running at once (in other processes) get disjoint uid ranges, so that no job
// of one can reach a job of another through a shared uid.
uint32_t pickFirstUid() {
  static uint32_t made = 0;
  uint32_t slot = (uint32_t(getpid()) * 8 + made++) % 140000;
  return 2001000000u + slot * RunnerdFixture::UIDS;
}

}  // namespace

RunnerdFixture::RunnerdFixture(kj::ArrayPtr<const kj::StringPtr> extraFlags,
                               kj::ArrayPtr<const kj::StringPtr> withoutFlags)
    : io(kj::setupAsyncIo()),
      extraFlags(KJ_MAP(flag, extraFlags) { return kj::str(flag); }),
      withoutFlags(KJ_MAP(name, withoutFlags) { return kj::str("--", name, "="); }),
      firstUid(pickFirstUid()) {
  // Not /tmp or /var/tmp: every job has private ones, and jobs read what tests put here.
  mkdir("/var/lib/runner-tests", 0755);
  auto tmpl = kj::str("/var/lib/runner-tests/runnerd-test.XXXXXX");
  KJ_ASSERT(mkdtemp(tmpl.begin()) != nullptr, strerror(errno));
  KJ_SYSCALL(chmod(tmpl.cStr(), 0755));
  root = kj::mv(tmpl);

  auto ca = certs::Authority::create("test CA", certs::Validity::forDays(1));
  certs::writeCredentials(root, "ca", {kj::str(ca.certPem()), kj::str(ca.keyPem())}, false);
  kj::StringPtr dns[] = {"localhost"};
  kj::StringPtr ips[] = {"127.0.0.1"};
  certs::writeCredentials(
      root, "server", ca.issueServer({"localhost", dns, ips}, certs::Validity::forDays(1)), false);
  for (auto user : {"alice", "bob", "admin"}) {
    certs::writeCredentials(root, user, ca.issueClient(user, certs::Validity::forDays(1)), false);
  }
  // runnerd checks every client against the CA's revocation list, empty to begin with.
  certs::writeFile(kj::str(root, "/crl.pem"),
                   ca.issueCrl(nullptr, nullptr, certs::Validity::forDays(1)).crlPem, 0644, false);
  start();
}

RunnerdFixture::~RunnerdFixture() noexcept(false) {
  if (serverPid != 0) stop();
  // The supervisor outlives runnerd by design; the test's jobs end with it.
  if (supervisorPid() != 0) signalSupervisor(SIGTERM);
  auto fs = kj::newDiskFilesystem();
  auto path = kj::Path::parse(root.slice(1));
  fs->getRoot().openSubdir(path.parent(), kj::WriteMode::MODIFY)->remove(path.basename());
}

kj::String RunnerdFixture::certPath(kj::StringPtr user) const {
  return kj::str(root, '/', user, ".pem");
}
kj::String RunnerdFixture::keyPath(kj::StringPtr user) const {
  return kj::str(root, '/', user, "-key.pem");
}
kj::String RunnerdFixture::caPath() const {
  return kj::str(root, "/ca.pem");
}

void RunnerdFixture::revoke(kj::StringPtr user) {
  auto ca = certs::Authority::load(readWholeFile(kj::str(root, "/ca.pem")),
                                   readWholeFile(kj::str(root, "/ca-key.pem")));
  auto crlPath = kj::str(root, "/crl.pem");
  auto cert = readWholeFile(certPath(user));
  auto current = readWholeFile(crlPath);
  auto crl = ca.issueCrl(kj::StringPtr(cert), kj::StringPtr(current), certs::Validity::forDays(1));
  certs::writeFile(crlPath, crl.crlPem, 0644, true);
}

void RunnerdFixture::issue(kj::StringPtr user, int64_t notBeforeOffset, int64_t notAfterOffset) {
  auto ca = certs::Authority::load(readWholeFile(kj::str(root, "/ca.pem")),
                                   readWholeFile(kj::str(root, "/ca-key.pem")));
  int64_t now = time(nullptr);
  certs::Validity validity{now + notBeforeOffset, now + notAfterOffset};
  certs::writeCredentials(root, user, ca.issueClient(user, validity), true);
}

void RunnerdFixture::issueFromOtherCa(kj::StringPtr user) {
  auto other = certs::Authority::create("other CA", certs::Validity::forDays(1));
  certs::writeCredentials(root, user, other.issueClient(user, certs::Validity::forDays(1)), true);
}

void RunnerdFixture::start() {
  KJ_REQUIRE(serverPid == 0, "runnerd is already running");
  auto logPath = kj::str(root, "/runnerd.stderr");
  auto binary = runnerdPath();
  kj::Vector<kj::String> argv;
  argv.add(kj::str(binary));
  argv.add(kj::str("--listen=127.0.0.1:0"));
  argv.add(kj::str("--tls-cert=", root, "/server.pem"));
  argv.add(kj::str("--tls-key=", root, "/server-key.pem"));
  argv.add(kj::str("--tls-ca=", root, "/ca.pem"));
  argv.add(kj::str("--tls-crl=", root, "/crl.pem"));
  argv.add(kj::str("--log-dir=", root, "/logs"));
  argv.add(kj::str("--state-dir=", root, "/state"));
  argv.add(kj::str("--admin=admin"));
  argv.add(kj::str("--grace=2"));
  argv.add(kj::str("--uid-range=", firstUid, "-", firstUid + UIDS - 1));
  size_t own = argv.size();
  for (auto& flag : extraFlags) argv.add(kj::str(flag));
  kj::Vector<char*> raw;
  for (auto i : kj::indices(argv)) {
    auto& arg = argv[i];
    bool left = i < own && std::any_of(withoutFlags.begin(), withoutFlags.end(),
                                       [&](const kj::String& p) { return arg.startsWith(p); });
    if (!left) raw.add(arg.begin());
  }
  raw.add(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, logPath.cStr(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  int error = posix_spawn(&serverPid, binary.cStr(), &actions, nullptr, raw.begin(), environ);
  posix_spawn_file_actions_destroy(&actions);
  KJ_ASSERT(error == 0, "cannot start runnerd", binary, strerror(error));

  // The port is in the line that says runnerd is listening; after a restart on the same
  // directory, the newest such line.
  for (int i = 0; i < 1000; i++) {
    auto log = serverLog();
    const char* newest = nullptr;
    size_t lines = 0;
    for (const char* p = log.cStr(); (p = strstr(p, "listening on ")) != nullptr; p++) {
      newest = p;
      ++lines;
    }
    if (lines > starts) {
      const char* begin = newest + strlen("listening on ");
      addr = kj::heapString(begin, strchr(begin, ' ') - begin);
      starts = lines;
      return;
    }
    int status;
    if (waitpid(serverPid, &status, WNOHANG) == serverPid) {
      serverPid = 0;
      KJ_FAIL_ASSERT("runnerd exited at start-up", log);
    }
    usleep(10000);
  }
  KJ_FAIL_ASSERT("runnerd did not start listening within 10 s", serverLog());
}

void RunnerdFixture::stop() {
  KJ_REQUIRE(serverPid != 0, "runnerd is not running");
  kill(serverPid, SIGTERM);
  int status;
  KJ_SYSCALL(waitpid(serverPid, &status, 0));
  serverPid = 0;
}

void RunnerdFixture::crash() {
  KJ_REQUIRE(serverPid != 0, "runnerd is not running");
  kill(serverPid, SIGKILL);
  int status;
  KJ_SYSCALL(waitpid(serverPid, &status, 0));
  serverPid = 0;
}

void RunnerdFixture::lowerDescriptorLimit(uint64_t limit) {
  struct stat st;
  KJ_SYSCALL(stat(kj::str("/proc/", serverPid).cStr(), &st));
  pid_t child;
  KJ_SYSCALL(child = fork());
  if (child == 0) {
    struct rlimit low = {limit, limit};
    bool ok = setgroups(0, nullptr) == 0 && setresgid(st.st_gid, st.st_gid, st.st_gid) == 0 &&
              setresuid(st.st_uid, st.st_uid, st.st_uid) == 0 &&
              prlimit(serverPid, RLIMIT_NOFILE, &low, nullptr) == 0;
    _exit(ok ? 0 : 1);
  }
  int status;
  KJ_SYSCALL(waitpid(child, &status, 0));
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "cannot lower runnerd's limit");
}

pid_t RunnerdFixture::supervisorPid() const {
  // The state directory runnerd was given last: the fixture's, unless a test's flag names another.
  auto stateDir = kj::str(root, "/state");
  for (auto& flag : extraFlags) {
    if (flag.startsWith("--state-dir=")) stateDir = kj::str(flag.slice(strlen("--state-dir=")));
  }
  auto path = kj::str(stateDir, "/supervisor.pid");
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  kj::AutoCloseFd owned(fd);
  // Only a running supervisor holds the lock on its pid file.
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) return 0;
  char text[32] = {};
  if (pread(fd, text, sizeof(text) - 1, 0) <= 0) return 0;
  return atoi(text);
}

namespace {

// Not this process's child: gone once /proc has no live process with this pid.
bool processGone(pid_t pid) {
  auto path = kj::str("/proc/", pid, "/stat");
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  char text[512] = {};
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  const char* paren = n > 0 ? strrchr(text, ')') : nullptr;
  return paren == nullptr || paren[1] == '\0' || paren[2] == 'Z' || paren[2] == 'X';
}

}  // namespace

void RunnerdFixture::signalSupervisor(int signal) {
  pid_t pid = supervisorPid();
  KJ_REQUIRE(pid > 0, "no supervisor runs");
  KJ_SYSCALL(kill(pid, signal));
  if (signal != SIGTERM && signal != SIGKILL) return;
  // A SIGTERM stops the jobs with their grace period first.
  for (int i = 0; i < 3000 && !processGone(pid); i++) usleep(10000);
  if (!processGone(pid)) {
    kill(pid, SIGKILL);
    for (int i = 0; i < 500 && !processGone(pid); i++) usleep(10000);
    KJ_FAIL_ASSERT("the supervisor did not stop within 30 s of the signal", signal);
  }
}

kj::String RunnerdFixture::serverLog() const {
  return readWholeFile(kj::str(root, "/runnerd.stderr"));
}

void RunnerdFixture::waitForLog(kj::StringPtr text) const {
  for (int i = 0; i < 1000; i++) {
    if (strstr(serverLog().cStr(), text.cStr()) != nullptr) return;
    usleep(10000);
  }
  KJ_FAIL_ASSERT("runnerd did not log this within 10 s", text, serverLog());
}

size_t RunnerdFixture::serverRssKib() const {
  auto status = readWholeFile(kj::str("/proc/", serverPid, "/status"));
  const char* line = strstr(status.cStr(), "VmRSS:");
  KJ_ASSERT(line != nullptr);
  return strtoul(line + strlen("VmRSS:"), nullptr, 10);
}

size_t RunnerdFixture::serverDescriptors() const {
  auto path = kj::str("/proc/", serverPid, "/fd");
  DIR* dir = opendir(path.cStr());
  KJ_ASSERT(dir != nullptr);
  size_t count = 0;
  while (auto entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

RunnerdFixture::Client::Client(RunnerdFixture& fixture, kj::StringPtr user)
    : tls(kj::heap<tls::ClientTls>(
          tls::TlsFiles{fixture.certPath(user), fixture.keyPath(user), fixture.caPath()},
          tls::ClientTls::CertCheck::SKIP)) {
  stream = tls->connect(fixture.io.provider->getNetwork(), fixture.address(), "localhost")
               .wait(fixture.io.waitScope);
  rpc = kj::heap<capnp::TwoPartyClient>(*stream);
  manager = rpc->bootstrap().castAs<api::JobManager>();
}

}  // namespace runner::testing

// The runner-certs command as a user runs it: real processes, real files in a temporary
// directory, exit statuses 0 / 1 (failure) / 2 (usage error), one line of error on stderr.

#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs/credential-files.h"

namespace runner {
namespace certs {
namespace {

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    auto pattern = kj::str(base == nullptr ? "/tmp" : base, "/runner-certs-test.XXXXXX");
    KJ_ASSERT(mkdtemp(pattern.begin()) != nullptr);
    path = kj::mv(pattern);
  }
  ~TempDir() noexcept(false) {
    nftw(
        path.cStr(),
        [](const char* file, const struct stat*, int, struct FTW*) { return remove(file); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  KJ_DISALLOW_COPY(TempDir);

  kj::String operator/(kj::StringPtr name) const { return kj::str(path, '/', name); }

  kj::String path;
};

struct Run {
  int status;
  kj::String out;
  kj::String err;
};

// Runs certs/runner-certs (from the test's runfiles) with `args`, which need no shell quoting.
Run runCerts(const TempDir& scratch, kj::StringPtr args) {
  auto out = scratch / "stdout";
  auto err = scratch / "stderr";
  auto command = kj::str("certs/runner-certs ", args, " >", out, " 2>", err);
  int status = system(command.cStr());
  KJ_ASSERT(WIFEXITED(status), command);
  return {WEXITSTATUS(status), readFile(out), readFile(err)};
}

bool exists(kj::StringPtr path) {
  return access(path.cStr(), F_OK) == 0;
}

TEST(RunnerCerts, MakesACaAServerAndAClient) {
  TempDir scratch, dir;
  auto ca = runCerts(scratch, kj::str("ca --out-dir ", dir.path));
  EXPECT_EQ(ca.status, 0) << ca.err.cStr();
  EXPECT_EQ(ca.err, "");

  auto server = runCerts(scratch, kj::str("server --ca-dir ", dir.path, " --out-dir ", dir.path,
                                          " --dns runner.example --ip 10.1.2.3"));
  EXPECT_EQ(server.status, 0) << server.err.cStr();
  auto client = runCerts(scratch, kj::str("client --ca-dir ", dir.path, " --out-dir ", dir.path,
                                          " --user alice --days 30"));
  EXPECT_EQ(client.status, 0) << client.err.cStr();

  for (auto name :
       {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "alice.pem", "alice-key.pem"}) {
    EXPECT_TRUE(exists(dir / name)) << name;
  }
  EXPECT_TRUE(readFile(dir / "alice.pem").startsWith("-----BEGIN CERTIFICATE-----"));
  EXPECT_TRUE(readFile(dir / "alice-key.pem").startsWith("-----BEGIN PRIVATE KEY-----"));
}

TEST(RunnerCerts, RefusesToOverwriteUnlessForced) {
  TempDir scratch, dir;
  ASSERT_EQ(runCerts(scratch, kj::str("ca --out-dir ", dir.path)).status, 0);
  auto before = readFile(dir / "ca.pem");

  auto again = runCerts(scratch, kj::str("ca --out-dir ", dir.path));
  EXPECT_EQ(again.status, 1);
  EXPECT_EQ(again.err, kj::str("runner-certs: ", dir / "ca.pem",
                               " already exists (use --force to overwrite it)\n"));
  EXPECT_EQ(readFile(dir / "ca.pem"), before);

  EXPECT_EQ(runCerts(scratch, kj::str("ca --force --out-dir ", dir.path)).status, 0);
  EXPECT_NE(readFile(dir / "ca.pem"), before);
}

TEST(RunnerCerts, UsageErrorsExit2AndFailuresExit1) {
  TempDir scratch, dir;
  auto badUser = runCerts(
      scratch, kj::str("client --ca-dir ", dir.path, " --out-dir ", dir.path, " --user a/b"));
  EXPECT_EQ(badUser.status, 2);
  EXPECT_TRUE(badUser.err.startsWith(
      "certs/runner-certs client: --user=a/b: user name must not contain '/': a/b\n"))
      << badUser.err.cStr();

  EXPECT_EQ(
      runCerts(scratch, kj::str("client --ca-dir ", dir.path, " --out-dir ", dir.path)).status,
      2);  // no --user
  EXPECT_EQ(runCerts(scratch, kj::str("ca --out-dir ", dir.path, " --days 0")).status, 2);
  EXPECT_EQ(runCerts(scratch, kj::str("server --ca-dir ", dir.path, " --out-dir ", dir.path,
                                      " --dns bad_name"))
                .status,
            2);
  EXPECT_EQ(runCerts(scratch, "frobnicate").status, 2);

  auto noCa = runCerts(scratch, kj::str("server --ca-dir ", dir.path, " --out-dir ", dir.path));
  EXPECT_EQ(noCa.status, 1);
  EXPECT_EQ(noCa.err,
            kj::str("runner-certs: cannot read ", dir / "ca.pem", ": No such file or directory\n"));
  EXPECT_FALSE(exists(dir / "server.pem"));

  auto help = runCerts(scratch, "server --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(strstr(help.out.cStr(), "--dns=<name>"), nullptr) << help.out.cStr();
}

TEST(RunnerCerts, RevokeKeepsTheCasListAndCrlMakesAnEmptyOne) {
  TempDir dir;
  ASSERT_EQ(runCerts(dir, kj::str("ca --out-dir ", dir.path)).status, 0);
  ASSERT_EQ(runCerts(dir, kj::str("client --ca-dir ", dir.path, " --out-dir ", dir.path,
                                  " --user bob")).status, 0);
  ASSERT_EQ(runCerts(dir, kj::str("client --ca-dir ", dir.path, " --out-dir ", dir.path,
                                  " --user carol")).status, 0);

  auto made = runCerts(dir, kj::str("crl --ca-dir ", dir.path));
  EXPECT_EQ(made.status, 0) << made.err.cStr();
  EXPECT_EQ(made.out, kj::str("wrote ", dir / "crl.pem", ", which lists 0 certificates\n"));

  auto revoked = runCerts(dir, kj::str("revoke --ca-dir ", dir.path, " --cert ", dir / "bob.pem"));
  EXPECT_EQ(revoked.status, 0) << revoked.err.cStr();
  EXPECT_TRUE(revoked.out.startsWith(kj::str("revoked ", dir / "bob.pem", " (CN=bob, serial ")))
      << revoked.out.cStr();
  EXPECT_TRUE(revoked.out.endsWith(" lists 1 certificate; reload runnerd (SIGHUP) to refuse it\n"))
      << revoked.out.cStr();
  auto again = runCerts(dir, kj::str("revoke --ca-dir ", dir.path, " --cert ", dir / "bob.pem"));
  EXPECT_TRUE(again.out.startsWith("already revoked: ")) << again.out.cStr();
  EXPECT_NE(strstr(again.out.cStr(), " lists 1 certificate;"), nullptr) << again.out.cStr();
  auto second = runCerts(dir, kj::str("revoke --ca-dir ", dir.path, " --cert ", dir / "carol.pem"));
  EXPECT_NE(strstr(second.out.cStr(), " lists 2 certificates;"), nullptr) << second.out.cStr();

  // The list is the CA's (OpenSSL checks its signature) and names both serials.
  auto check = kj::str("openssl crl -in ", dir / "crl.pem", " -CAfile ", dir / "ca.pem",
                       " -noout -text >", dir / "crl.txt", " 2>&1");
  EXPECT_EQ(system(check.cStr()), 0) << readFile(dir / "crl.txt").cStr();
  auto text = readFile(dir / "crl.txt");
  EXPECT_NE(strstr(text.cStr(), "verify OK"), nullptr) << text.cStr();
  size_t serials = 0;
  for (const char* p = text.cStr(); (p = strstr(p, "Serial Number:")) != nullptr; ++p) ++serials;
  EXPECT_EQ(serials, 2u) << text.cStr();

  // A certificate of another CA, or none at all: one line, nothing written.
  TempDir other;
  ASSERT_EQ(runCerts(other, kj::str("ca --out-dir ", other.path)).status, 0);
  ASSERT_EQ(runCerts(other, kj::str("client --ca-dir ", other.path, " --out-dir ", other.path,
                                    " --user mallory")).status, 0);
  auto before = readFile(dir / "crl.pem");
  auto foreign = runCerts(dir, kj::str("revoke --ca-dir ", dir.path, " --cert ",
                                       other / "mallory.pem"));
  EXPECT_EQ(foreign.status, 1);
  EXPECT_EQ(foreign.err,
            "runner-certs: the certificate to revoke was not issued by this CA\n");
  EXPECT_EQ(readFile(dir / "crl.pem"), before);
  auto missing = runCerts(dir, kj::str("revoke --ca-dir ", dir.path));
  EXPECT_EQ(missing.status, 2) << missing.err.cStr();
}

}  // namespace
}  // namespace certs
}  // namespace runner

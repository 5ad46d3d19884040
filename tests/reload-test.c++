// runnerd's SIGHUP reload through a real runnerd: a revoked user is refused from the reload on
// while others connect and connections already open keep working; certificates renewed in place
// are served; a configuration that does not load is refused with one line and the one in force
// stays.

#include <sys/stat.h>

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
                 answer = kj::str(
                     client->manager.whoamiRequest().send().wait(f.io.waitScope).getUser());
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
  EXPECT_TRUE(logHas(f, "(changed); CA CN = test CA (unchanged)"))
      << f.serverLog().cStr();
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
  certs::writeCredentials(f.dir(), "server", other.issueServer({"localhost", dns, nullptr},
                                                               certs::Validity::forDays(1)),
                          true);
  letTheDaemonReadTheKey(f);
  certs::writeFile(crl, goodCrl, 0644, true);
  reload(f, "reload on SIGHUP refused: ");
  EXPECT_EQ(whoami(f, "alice"), "alice");
  EXPECT_TRUE(kill(f.pid(), 0) == 0) << "runnerd is gone";
}

}  // namespace
}  // namespace runner::testing

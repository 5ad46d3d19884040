#include "client/connection.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/map.h>
#include <stdlib.h>

#include "certs/authority.h"
#include "certs/credential-files.h"
#include "client/error-message.h"
#include "client/test-printing.h"

namespace runner {
namespace client {
namespace {

// An environment made of a table, instead of the process's own.
class FakeEnv {
 public:
  FakeEnv(std::initializer_list<std::pair<kj::StringPtr, kj::StringPtr>> entries) {
    for (auto& entry : entries) table.insert(entry.first, entry.second);
  }
  EnvLookup lookup() {
    return [this](kj::StringPtr name) -> kj::Maybe<kj::StringPtr> { return table.find(name); };
  }

 private:
  kj::HashMap<kj::StringPtr, kj::StringPtr> table;
};

kj::String resolveError(const ServerFlags& flags, FakeEnv& env) {
  KJ_IF_MAYBE (exception,
               kj::runCatchingExceptions([&]() { resolveServerSettings(flags, env.lookup()); })) {
    return cleanErrorMessage(*exception);
  }
  ADD_FAILURE() << "expected an error";
  return kj::str();
}

TEST(ResolveServerSettings, FlagsWinOverTheEnvironment) {
  FakeEnv env({{"RUNCTL_SERVER", "env-host:1"},
               {"RUNCTL_CERT", "env.pem"},
               {"RUNCTL_KEY", "env-key.pem"},
               {"RUNCTL_CA", "env-ca.pem"},
               {"RUNCTL_SERVER_NAME", "env-name"}});
  ServerFlags flags;
  flags.server = kj::str("flag-host:2");
  flags.cert = kj::str("flag.pem");
  auto settings = resolveServerSettings(flags, env.lookup());
  EXPECT_EQ(settings.server, "flag-host:2");
  EXPECT_EQ(settings.serverName, "env-name");
  EXPECT_EQ(settings.cert, "flag.pem");
  EXPECT_EQ(settings.key, "env-key.pem");
  EXPECT_EQ(settings.ca, "env-ca.pem");
}

TEST(ResolveServerSettings, DefaultsToLocalhostAndTheHostAsServerName) {
  FakeEnv env({{"RUNCTL_CERT", "c"}, {"RUNCTL_KEY", "k"}, {"RUNCTL_CA", "a"}});
  auto settings = resolveServerSettings(ServerFlags(), env.lookup());
  EXPECT_EQ(settings.server, "127.0.0.1:7443");
  EXPECT_EQ(settings.serverName, "127.0.0.1");

  ServerFlags flags;
  flags.server = kj::str("[::1]:9000");
  EXPECT_EQ(resolveServerSettings(flags, env.lookup()).serverName, "::1");
  flags.server = kj::str("runner.example.com:9000");
  EXPECT_EQ(resolveServerSettings(flags, env.lookup()).serverName, "runner.example.com");
}

TEST(ResolveServerSettings, MissingCredentialsNameTheFlagAndTheVariable) {
  FakeEnv none({});
  EXPECT_EQ(resolveError(ServerFlags(), none), "missing --cert (or set RUNCTL_CERT)");
  FakeEnv certOnly({{"RUNCTL_CERT", "c"}});
  EXPECT_EQ(resolveError(ServerFlags(), certOnly), "missing --key (or set RUNCTL_KEY)");
  FakeEnv noCa({{"RUNCTL_CERT", "c"}, {"RUNCTL_KEY", "k"}});
  EXPECT_EQ(resolveError(ServerFlags(), noCa), "missing --ca (or set RUNCTL_CA)");
}

TEST(ResolveServerSettings, RejectsAServerWithoutPortAndEmptyFlags) {
  FakeEnv env({{"RUNCTL_CERT", "c"}, {"RUNCTL_KEY", "k"}, {"RUNCTL_CA", "a"}});
  ServerFlags noPort;
  noPort.server = kj::str("localhost");
  auto error = resolveError(noPort, env);
  EXPECT_TRUE(error.startsWith("server address must be HOST:PORT")) << error.cStr();
  ServerFlags empty;
  empty.cert = kj::str("");
  EXPECT_EQ(resolveError(empty, env), "--cert must not be empty");
}

// Real credentials from runner's own CA, in a fresh directory.
class ConnectToServer : public testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    dir = kj::str(tmp != nullptr ? tmp : "/tmp", "/connection-test-XXXXXX");
    KJ_ASSERT(mkdtemp(dir.begin()) != nullptr);
    auto validity = certs::Validity::forDays(1);
    auto authority = certs::Authority::create("test CA", validity);
    auto client = authority.issueClient("alice", validity);
    certs::writeFile(kj::str(dir, "/ca.pem"), authority.certPem(), 0644, true);
    certs::writeFile(kj::str(dir, "/alice.pem"), client.certPem, 0644, true);
    certs::writeFile(kj::str(dir, "/alice-key.pem"), client.keyPem, 0600, true);
  }

  ServerSettings settingsFor(kj::StringPtr server) {
    return {kj::str(server), tls::ClientTls::hostOf(server), kj::str(dir, "/alice.pem"),
            kj::str(dir, "/alice-key.pem"), kj::str(dir, "/ca.pem")};
  }

  kj::Exception connectFailure(kj::AsyncIoContext& io, const ServerSettings& settings) {
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   connectToServer(io.provider->getNetwork(), settings).wait(io.waitScope);
                 })) {
      return kj::mv(*exception);
    }
    ADD_FAILURE() << "expected the connection to fail";
    return KJ_EXCEPTION(FAILED, "connected");
  }

  kj::String dir;
};

TEST_F(ConnectToServer, ARefusedConnectionSaysWhereItTriedAndWhy) {
  auto io = kj::setupAsyncIo();
  // A port that was free a moment ago and has no listener.
  auto listener =
      io.provider->getNetwork().parseAddress("127.0.0.1:0").wait(io.waitScope)->listen();
  auto server = kj::str("127.0.0.1:", listener->getPort());
  listener = nullptr;

  auto exception = connectFailure(io, settingsFor(server));
  EXPECT_EQ(exception.getType(), kj::Exception::Type::DISCONNECTED);
  auto message = cleanErrorMessage(exception);
  EXPECT_TRUE(message.startsWith(kj::str("cannot connect to ", server, ": "))) << message.cStr();
  EXPECT_NE(strstr(message.cStr(), "Connection refused"), nullptr) << message.cStr();
  EXPECT_EQ(message.findFirst('\n'), nullptr);
}

TEST_F(ConnectToServer, AServerThatDoesNotSpeakTlsIsAConnectFailure) {
  auto io = kj::setupAsyncIo();
  auto listener =
      io.provider->getNetwork().parseAddress("127.0.0.1:0").wait(io.waitScope)->listen();
  auto server = kj::str("127.0.0.1:", listener->getPort());
  // Accepts and hangs up at once.
  auto hangUp =
      listener->accept().then([](kj::Own<kj::AsyncIoStream> stream) {}).eagerlyEvaluate(nullptr);

  auto message = cleanErrorMessage(connectFailure(io, settingsFor(server)));
  EXPECT_TRUE(message.startsWith(kj::str("cannot connect to ", server, ": "))) << message.cStr();
}

TEST_F(ConnectToServer, AMissingCredentialFileIsNamed) {
  auto io = kj::setupAsyncIo();
  auto settings = settingsFor("127.0.0.1:1");
  settings.key = kj::str(dir, "/nope.pem");
  auto message = cleanErrorMessage(connectFailure(io, settings));
  EXPECT_NE(strstr(message.cStr(), "/nope.pem"), nullptr) << message.cStr();
}

}  // namespace
}  // namespace client
}  // namespace runner

// ServerTls and ClientTls over real loopback TCP, with certificates made by //certs in a temporary
// directory. The server side is an accept loop like runnerd's: plain TCP, wrapServer() per
// connection. Clients are either ClientTls or a raw OpenSSL client (to offer what ClientTls never
// would, and to read the negotiated protocol, suite and session tickets), which runs blocking in
// its own thread while the test thread runs the KJ event loop.

#include <arpa/inet.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-queue.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "certs/authority.h"
#include "certs/credential-files.h"
#include "tls/test-certificates.h"
#include "tls/tls-config.h"

namespace runner {
namespace tls {
namespace {

// A directory that exists for one test binary run.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    auto pattern = kj::str(base == nullptr ? "/tmp" : base, "/tls-config-test.XXXXXX");
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

// Every certificate the tests need, as files: BASE.pem and BASE-key.pem.
class Pki {
 public:
  Pki() {
    auto day = certs::Validity::forDays(1);
    auto ca = certs::Authority::create("runner CA", day);
    auto otherCa = certs::Authority::create("other CA", day);
    write("ca", {kj::str(ca.certPem()), kj::str(ca.keyPem())});
    write("other-ca", {kj::str(otherCa.certPem()), kj::str(otherCa.keyPem())});

    kj::StringPtr localDns[] = {"localhost"};
    kj::StringPtr localIps[] = {"127.0.0.1", "::1"};
    kj::StringPtr elsewhereDns[] = {"elsewhere.example"};
    write("server", ca.issueServer({nullptr, localDns, localIps}, day));
    write("other-server", otherCa.issueServer({nullptr, localDns, localIps}, day));
    write("elsewhere", ca.issueServer({nullptr, elsewhereDns, nullptr}, day));
    write("alice", ca.issueClient("alice", day));
    write("mallory", otherCa.issueClient("mallory", day));
    int64_t now = time(nullptr);
    write("expired", ca.issueClient("expired", {now - 2 * 86400, now - 86400}));
    write("jose", ca.issueClient("Jos\xc3\xa9", day));

    // Client certificates that name no user, all signed by the CA. runner-certs makes none of
    // them but the one with a C1 control character (see RunnerCertsMakesOnlyOneOfTheBadNames).
    auto cn = [](kj::ArrayPtr<const char> value, int type = V_ASN1_UTF8STRING) {
      return NameEntry{NID_commonName, type, value};
    };
    auto issue = [&](kj::StringPtr base, std::initializer_list<NameEntry> subject) {
      write(base, issueClientWithSubject(ca, kj::arrayPtr(subject.begin(), subject.size())).pem);
    };
    issue("two-cns", {cn(bytes("admin")), cn(bytes("bob"))});
    issue("multi-valued-cn",
          {cn(bytes("admin")), {NID_commonName, V_ASN1_UTF8STRING, bytes("bob"), true}});
    issue("escape-cn", {cn(bytes("bob\x1b[2J\x1b[31mroot"))});
    issue("nul-cn", {cn(bytes("admin\0bob"))});
    issue("newline-cn", {cn(bytes("bob\nrefused connection peer=x"))});
    issue("bit-string-cn", {cn(bytes("\xff\xfe"), V_ASN1_BIT_STRING)});
    issue("empty-cn", {cn(bytes(""))});
    issue("no-cn", {{NID_organizationName, V_ASN1_UTF8STRING, bytes("runner")}});
    write("c1-cn", ca.issueClient("bob\u009b31m", day));
  }

  kj::String cert(kj::StringPtr base) const { return dir / kj::str(base, ".pem"); }
  kj::String key(kj::StringPtr base) const { return dir / kj::str(base, "-key.pem"); }

  TempDir dir;

 private:
  void write(kj::StringPtr base, certs::Credentials credentials) {
    certs::writeCredentials(dir.path, base, credentials, false);
  }
};

const Pki& pki() {
  static const Pki instance;
  return instance;
}

// The files of end BASE, trusting CA (its own certificate file).
struct Files {
  Files(kj::StringPtr base, kj::StringPtr ca)
      : cert(pki().cert(base)), key(pki().key(base)), ca(pki().cert(ca)) {}
  Files(kj::String cert, kj::String key, kj::String ca)
      : cert(kj::mv(cert)), key(kj::mv(key)), ca(kj::mv(ca)) {}
  operator TlsFiles() const { return {cert, key, ca}; }

  kj::String cert;
  kj::String key;
  kj::String ca;
};

// The description of the exception `body` throws, or "(nothing thrown)".
template <typename Body>
kj::String errorOf(Body&& body) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::fwd<Body>(body))) {
    return kj::str(exception->getDescription());
  }
  return kj::str("(nothing thrown)");
}

bool contains(kj::StringPtr text, kj::StringPtr part) {
  return strstr(text.cStr(), part.cStr()) != nullptr;
}

// What the server made of one connection.
struct Outcome {
  bool handshake = false;  // the TLS handshake completed
  bool accepted = false;
  kj::String user;   // when accepted
  kj::String error;  // when refused: the exception's description
  kj::Exception::Type errorType = kj::Exception::Type::FAILED;
};

// runnerd's accept loop in miniature: accepts plain TCP on 127.0.0.1, runs wrapServer() on each
// connection concurrently, then asks ServerTls::peerCommonName() who it is, and then reads "ping"
// and answers "pong".
class TestServer final : private kj::TaskSet::ErrorHandler {
 public:
  using Wrap = kj::Function<kj::Promise<kj::AuthenticatedStream>(kj::AuthenticatedStream)>;

  TestServer(kj::AsyncIoContext& io, ServerTls& tls)
      : TestServer(
            io, [&tls](kj::AuthenticatedStream plain) { return tls.wrapServer(kj::mv(plain)); }) {}

  // With another server side of the handshake than ServerTls's.
  TestServer(kj::AsyncIoContext& io, Wrap wrap)
      : wrap(kj::mv(wrap)),
        listener(
            io.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io.waitScope)->listen()),
        tasks(*this) {
    tasks.add(acceptLoop());
  }

  unsigned port() { return listener->getPort(); }
  kj::String address() { return kj::str("127.0.0.1:", port()); }

  // The next connection's outcome, in the order they are decided.
  kj::Promise<Outcome> nextOutcome() { return outcomes.pop(); }

 private:
  Wrap wrap;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::ProducerConsumerQueue<Outcome> outcomes;
  kj::TaskSet tasks;

  kj::Promise<void> acceptLoop() {
    return listener->acceptAuthenticated().then([this](kj::AuthenticatedStream stream) {
      tasks.add(serve(kj::mv(stream)));
      return acceptLoop();
    });
  }

  kj::Promise<void> serve(kj::AuthenticatedStream plain) {
    return wrap(kj::mv(plain))
        .then(
            [this](kj::AuthenticatedStream stream) -> kj::Promise<void> {
              kj::String user;
              KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                             user = ServerTls::peerCommonName(*stream.peerIdentity);
                           })) {
                // As runnerd does: the connection is closed before any request.
                Outcome outcome;
                outcome.handshake = true;
                outcome.error = kj::str(exception->getDescription());
                outcome.errorType = exception->getType();
                outcomes.push(kj::mv(outcome));
                return kj::READY_NOW;
              }
              auto& connection = *stream.stream;
              auto buffer = kj::heapArray<char>(4);
              auto read = connection.read(buffer.begin(), buffer.size());
              return read
                  .then([this, &connection, buffer = kj::mv(buffer),
                         user = kj::mv(user)]() mutable {
                    KJ_ASSERT(kj::str(buffer) == "ping", kj::str(buffer));
                    return connection.write("pong", 4).then([this, user = kj::mv(user)]() mutable {
                      Outcome outcome;
                      outcome.handshake = true;
                      outcome.accepted = true;
                      outcome.user = kj::mv(user);
                      outcomes.push(kj::mv(outcome));
                    });
                  })
                  .attach(kj::mv(stream.stream));
            },
            [this](kj::Exception&& exception) {
              Outcome outcome;
              outcome.error = kj::str(exception.getDescription());
              outcome.errorType = exception.getType();
              outcomes.push(kj::mv(outcome));
            });
  }

  void taskFailed(kj::Exception&& exception) override {
    ADD_FAILURE() << "server task failed: " << exception.getDescription().cStr();
  }
};

// Connects with ClientTls, sends "ping" and returns the reply (or the error).
kj::String pingWithClientTls(kj::AsyncIoContext& io, ClientTls& client, kj::StringPtr address,
                             kj::StringPtr serverName) {
  kj::String result;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 auto stream = client.connect(io.provider->getNetwork(), address, serverName)
                                   .wait(io.waitScope);
                 stream->write("ping", 4).wait(io.waitScope);
                 char reply[5] = {};
                 size_t n = stream->tryRead(reply, 4, 4).wait(io.waitScope);
                 result = kj::heapString(reply, n);
               })) {
    result = kj::str("error: ", exception->getDescription());
  }
  return result;
}

// A reference to an OpenSSL session (what a session ticket lets a client resume).
class Session {
 public:
  Session() = default;
  Session(Session&& other) : session(other.session) { other.session = nullptr; }
  Session& operator=(Session&& other) {
    std::swap(session, other.session);
    return *this;
  }
  ~Session() noexcept(false) {
    if (session != nullptr) SSL_SESSION_free(session);
  }
  KJ_DISALLOW_COPY(Session);

  // Takes over the caller's reference.
  void reset(SSL_SESSION* newSession) {
    if (session != nullptr) SSL_SESSION_free(session);
    session = newSession;
  }
  SSL_SESSION* get() const { return session; }

 private:
  SSL_SESSION* session = nullptr;
};

// What a raw OpenSSL client offers.
struct RawClientOptions {
  int maxVersion = 0;          // e.g. TLS1_2_VERSION; 0 for OpenSSL's default (up to 1.3)
  kj::StringPtr ciphersuites;  // TLS 1.3 suites to offer; empty for OpenSSL's default
  bool presentCertificate = true;
  kj::StringPtr certificate = "alice";
  SSL_SESSION* resume = nullptr;  // a session to offer for resumption
};

// What a raw OpenSSL client saw.
struct RawClientResult {
  bool handshake = false;
  kj::String protocol;
  kj::String cipher;
  kj::String reply;  // "pong", or "error: ..." when the exchange failed
  kj::String error;  // when the handshake failed
  // Session tickets: how many arrived (each one makes a new resumable session), the last one's
  // session, and whether the session in use at the end could be resumed.
  unsigned tickets = 0;
  Session lastTicket;
  bool resumable = false;
  bool resumed = false;  // whether the handshake resumed `RawClientOptions::resume`
};

// OpenSSL's new-session callback: a TLS 1.3 client calls it for every ticket the server sends.
int onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto& result = *static_cast<RawClientResult*>(SSL_get_app_data(ssl));
  ++result.tickets;
  result.lastTicket.reset(session);
  return 1;  // the reference is ours now
}

kj::String takeSslErrors() {
  char text[256];
  unsigned long error = ERR_get_error();
  if (error == 0) return kj::str("(no OpenSSL error)");
  ERR_error_string_n(error, text, sizeof(text));
  ERR_clear_error();
  return kj::str(text);
}

// Blocking client: TLS handshake with the test server, then "ping" / "pong". Runs in its own
// thread; a receive timeout only guards against a hung test, it never orders events.
void rawClient(unsigned port, const RawClientOptions& options, RawClientResult& result) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  KJ_DEFER(SSL_CTX_free(ctx));
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  KJ_ASSERT(SSL_CTX_load_verify_locations(ctx, pki().cert("ca").cStr(), nullptr) == 1);
  if (options.maxVersion != 0) SSL_CTX_set_max_proto_version(ctx, options.maxVersion);
  if (options.ciphersuites.size() > 0) {
    KJ_ASSERT(SSL_CTX_set_ciphersuites(ctx, options.ciphersuites.cStr()) == 1);
  }
  if (options.presentCertificate) {
    KJ_ASSERT(SSL_CTX_use_certificate_file(ctx, pki().cert(options.certificate).cStr(),
                                           SSL_FILETYPE_PEM));
    KJ_ASSERT(
        SSL_CTX_use_PrivateKey_file(ctx, pki().key(options.certificate).cStr(), SSL_FILETYPE_PEM));
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, onNewSession);

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_ASSERT(fd >= 0);
  kj::AutoCloseFd socketFd(fd);
  struct timeval guard = {20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof(guard));
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(connect(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)));

  SSL* ssl = SSL_new(ctx);
  KJ_DEFER(SSL_free(ssl));
  SSL_set_app_data(ssl, &result);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  SSL_set1_host(ssl, "localhost");
  if (options.resume != nullptr) {
    KJ_ASSERT(SSL_set_session(ssl, options.resume) == 1);
  }
  if (SSL_connect(ssl) != 1) {
    result.error = takeSslErrors();
    return;
  }
  result.handshake = true;
  result.protocol = kj::str(SSL_get_version(ssl));
  result.cipher = kj::str(SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
  result.resumed = SSL_session_reused(ssl) == 1;

  char reply[5] = {};
  if (SSL_write(ssl, "ping", 4) != 4) {
    result.reply = kj::str("error: ", takeSslErrors());
    return;
  }
  // In TLS 1.3 tickets follow the server's handshake, so they arrive before the reply.
  int n = SSL_read(ssl, reply, 4);
  result.reply = n == 4 ? kj::str(reply) : kj::str("error: ", takeSslErrors());
  result.resumable = SSL_SESSION_is_resumable(SSL_get0_session(ssl)) == 1;
  SSL_shutdown(ssl);
}

// Runs rawClient() in a thread while this thread's event loop serves it; returns once the client
// is done (its end of the pipe closes when its thread function returns) and joined.
RawClientResult runRawClient(kj::AsyncIoContext& io, unsigned port, RawClientOptions options) {
  RawClientResult result;
  {
    auto thread =
        io.provider->newPipeThread([&](kj::AsyncIoProvider&, kj::AsyncIoStream&, kj::WaitScope&) {
          rawClient(port, options, result);
        });
    thread.pipe->readAllText().wait(io.waitScope);
  }
  return result;
}

// The server side of the handshake as kj-tls alone does it, with the same settings as ServerTls
// (TLS 1.3 only, a client certificate from the CA required) and nothing of runner's added.
class KjOnlyServerTls {
 public:
  KjOnlyServerTls()
      : ca(certs::readFile(pki().cert("ca"))),
        keypair{kj::TlsPrivateKey(certs::readFile(pki().key("server"))),
                kj::TlsCertificate(certs::readFile(pki().cert("server")))},
        context(options()) {}

  kj::Promise<kj::AuthenticatedStream> wrapServer(kj::AuthenticatedStream plain) {
    return context.wrapServer(kj::mv(plain));
  }

 private:
  kj::TlsCertificate ca;
  kj::TlsKeypair keypair;
  kj::TlsContext context;

  kj::TlsContext::Options options() {
    kj::TlsContext::Options options;
    options.useSystemTrustStore = false;
    options.trustedCertificates = kj::arrayPtr(&ca, 1);
    options.minVersion = TLS_1_3_ONLY;
    options.defaultKeypair = keypair;
    options.verifyClients = true;
    return options;
  }
};

// Whether every byte of `text` is printable ASCII: no raw byte of a bad name got through.
bool isPrintableAscii(kj::StringPtr text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

constexpr auto TEST_TIMEOUT = 10 * kj::SECONDS;

// ---------------------------------------------------------------------------------------------

TEST(ServerTls, ClientWithGoodCertConnectsAndServerSeesItsName) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("alice", "ca"));

  EXPECT_EQ(pingWithClientTls(io, client, server.address(), "localhost"), "pong");
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_TRUE(outcome.accepted) << outcome.error.cStr();
  EXPECT_EQ(outcome.user, "alice");

  // Without a server name the client verifies the address itself (see certs' issueServer()).
  EXPECT_EQ(pingWithClientTls(io, client, server.address(), nullptr), "pong");
  EXPECT_TRUE(server.nextOutcome().wait(io.waitScope).accepted);
}

TEST(ServerTls, RefusesAClientThatOffersOnlyTls12) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);

  RawClientOptions options;
  options.maxVersion = TLS1_2_VERSION;
  auto result = runRawClient(io, server.port(), options);
  EXPECT_FALSE(result.handshake);
  EXPECT_TRUE(contains(result.error, "protocol version")) << result.error.cStr();

  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_TRUE(outcome.error.startsWith("TLS handshake with 127.0.0.1:")) << outcome.error.cStr();
  EXPECT_TRUE(contains(outcome.error, "failed: unsupported protocol")) << outcome.error.cStr();
}

TEST(ServerTls, RefusesATls13ClientWithoutCertificate) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);

  RawClientOptions options;
  options.presentCertificate = false;
  auto result = runRawClient(io, server.port(), options);
  // In TLS 1.3 the client's handshake completes first; the refusal arrives as an alert.
  EXPECT_NE(result.reply, "pong");
  EXPECT_TRUE(contains(result.reply, "certificate required")) << result.reply.cStr();

  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_TRUE(contains(outcome.error, "failed: peer did not return a certificate"))
      << outcome.error.cStr();
}

TEST(ServerTls, RefusesAClientCertFromAnotherCa) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("mallory", "ca"), ClientTls::CertCheck::SKIP);

  EXPECT_TRUE(pingWithClientTls(io, client, server.address(), "localhost").startsWith("error: "));
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_TRUE(contains(outcome.error, "failed: certificate verify failed")) << outcome.error.cStr();
}

TEST(ServerTls, RefusesAnExpiredClientCert) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("expired", "ca"), ClientTls::CertCheck::SKIP);

  auto reply = pingWithClientTls(io, client, server.address(), "localhost");
  EXPECT_TRUE(contains(reply, "certificate expired")) << reply.cStr();
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_TRUE(contains(outcome.error, "failed: certificate verify failed")) << outcome.error.cStr();
}

TEST(ServerTls, NegotiatesTls13WithOneOfOpenSslsDefaultSuites) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);

  auto result = runRawClient(io, server.port(), {});
  ASSERT_TRUE(result.handshake) << result.error.cStr();
  EXPECT_EQ(result.protocol, "TLSv1.3");
  EXPECT_TRUE(result.cipher == "TLS_AES_128_GCM_SHA256" ||
              result.cipher == "TLS_AES_256_GCM_SHA384" ||
              result.cipher == "TLS_CHACHA20_POLY1305_SHA256")
      << result.cipher.cStr();
  EXPECT_EQ(result.reply, "pong");
  EXPECT_EQ(server.nextOutcome().wait(io.waitScope).user, "alice");

  // Each of the three default suites is accepted on its own.
  for (kj::StringPtr suite :
       {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
    RawClientOptions options;
    options.ciphersuites = suite;
    auto only = runRawClient(io, server.port(), options);
    EXPECT_EQ(only.cipher, suite);
    EXPECT_EQ(only.reply, "pong");
    EXPECT_TRUE(server.nextOutcome().wait(io.waitScope).accepted);
  }
}

TEST(ServerTls, DropsASilentClientAfterTheHandshakeTimeoutAndKeepsAccepting) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), 200 * kj::MILLISECONDS);
  TestServer server(io, serverTls);
  ClientTls client(Files("alice", "ca"));

  auto silent = io.provider->getNetwork()
                    .parseAddress(server.address())
                    .wait(io.waitScope)
                    ->connect()
                    .wait(io.waitScope);
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_EQ(outcome.errorType, kj::Exception::Type::OVERLOADED);
  EXPECT_TRUE(contains(outcome.error, "failed: no handshake within 200ms")) << outcome.error.cStr();
  char byte;
  EXPECT_EQ(silent->tryRead(&byte, 1, 1).wait(io.waitScope), 0u);  // the server hung up

  EXPECT_EQ(pingWithClientTls(io, client, server.address(), "localhost"), "pong");
  EXPECT_EQ(server.nextOutcome().wait(io.waitScope).user, "alice");
}

TEST(ServerTls, PeerCommonNameNeedsATlsIdentity) {
  auto io = kj::setupAsyncIo();
  auto address = io.provider->getNetwork().parseAddress("127.0.0.1", 1).wait(io.waitScope);
  auto plain = kj::NetworkPeerIdentity::newInstance(kj::mv(address));
  EXPECT_TRUE(errorOf([&]() {
                ServerTls::peerCommonName(*plain);
              }).startsWith("connection is not authenticated by TLS"));
}

TEST(ClientTls, RefusesAServerWhoseCertIsFromAnotherCa) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("other-server", "other-ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("alice", "ca"));

  auto reply = pingWithClientTls(io, client, server.address(), "localhost");
  EXPECT_TRUE(contains(reply, "certificate verify failed")) << reply.cStr();
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_TRUE(contains(outcome.error, "unknown ca")) << outcome.error.cStr();
}

TEST(ClientTls, RefusesAServerWhoseNameDoesNotMatch) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("elsewhere", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("alice", "ca"));

  for (kj::StringPtr name : {"localhost", ""}) {
    auto reply = pingWithClientTls(io, client, server.address(), name);
    EXPECT_TRUE(contains(reply, "certificate verify failed")) << reply.cStr();
    EXPECT_FALSE(server.nextOutcome().wait(io.waitScope).accepted);
  }
  // The same server is fine under the name its certificate carries.
  EXPECT_EQ(pingWithClientTls(io, client, server.address(), "elsewhere.example"), "pong");
  EXPECT_TRUE(server.nextOutcome().wait(io.waitScope).accepted);
}

TEST(ClientTls, ServerNameDefaultsToTheAddressHost) {
  EXPECT_EQ(ClientTls::hostOf("localhost:7443"), "localhost");
  EXPECT_EQ(ClientTls::hostOf("127.0.0.1:7443"), "127.0.0.1");
  EXPECT_EQ(ClientTls::hostOf("[::1]:7443"), "::1");
  EXPECT_EQ(errorOf([]() { ClientTls::hostOf("localhost"); }),
            "server address must be HOST:PORT or [IPV6]:PORT: localhost");
  EXPECT_EQ(errorOf([]() { ClientTls::hostOf("::1:7443"); }),
            "server address must be HOST:PORT or [IPV6]:PORT: ::1:7443");
  EXPECT_EQ(ClientTls::expectedName("0:0:0:0:0:0:0:1"), "::1");
  EXPECT_EQ(ClientTls::expectedName("runner.example"), "runner.example");
}

TEST(ClientTls, WritingToAConnectionTheServerClosedFailsRatherThanHangs) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("alice", "ca"));
  auto stream =
      client.connect(io.provider->getNetwork(), server.address(), "localhost").wait(io.waitScope);
  stream->write("ping", 4).wait(io.waitScope);
  char reply[4];
  ASSERT_EQ(stream->tryRead(reply, 4, 4).wait(io.waitScope), 4u);
  // The server answered and then closed its end.
  ASSERT_TRUE(server.nextOutcome().wait(io.waitScope).accepted);

  // Far more than the socket buffers hold: some write must fail (EPIPE or a reset, however the
  // socket reports it), and the failure must reach the writer instead of stalling it.
  auto chunk = kj::heapArray<kj::byte>(1 << 20);
  memset(chunk.begin(), 'x', chunk.size());
  kj::Promise<void> writes = kj::READY_NOW;
  for (int i = 0; i < 64; i++) {
    writes = writes.then([&]() { return stream->write(chunk.begin(), chunk.size()); });
  }
  auto outcome = writes.then([]() { return kj::str("every write succeeded"); },
                             [](kj::Exception&&) { return kj::str("failed"); })
                     .exclusiveJoin(io.provider->getTimer()
                                        .afterDelay(10 * kj::SECONDS)
                                        .then([]() { return kj::str("hung"); }))
                     .wait(io.waitScope);
  EXPECT_EQ(outcome, "failed");
}

TEST(ClientTls, ConstructionChecksTheClientCert) {
  EXPECT_EQ(errorOf([]() { ClientTls(Files("mallory", "ca")); }),
            kj::str("TLS certificate ", pki().cert("mallory"), " is not signed by the CA in ",
                    pki().cert("ca")));
  EXPECT_EQ(errorOf([]() { ClientTls(Files("expired", "ca")); }),
            kj::str("TLS certificate ", pki().cert("expired"),
                    " is not valid for a client under the CA in ", pki().cert("ca"),
                    ": certificate has expired"));
  EXPECT_EQ(errorOf([]() { ClientTls(Files("server", "ca")); }),
            kj::str("TLS certificate ", pki().cert("server"),
                    " is not valid for a client under the CA in ", pki().cert("ca"),
                    ": unsuitable certificate purpose"));
}

TEST(ServerTls, ConstructionErrorsNameTheProblem) {
  auto io = kj::setupAsyncIo();
  auto make = [&](Files files) {
    return errorOf([&]() { ServerTls(files, io.provider->getTimer()); });
  };
  auto missing = pki().dir / "missing.pem";

  EXPECT_EQ(make(Files(kj::str(missing), pki().key("server"), pki().cert("ca"))),
            kj::str("cannot read TLS certificate ", missing, ": No such file or directory"));
  EXPECT_EQ(make(Files(pki().cert("server"), pki().key("server"), kj::str(missing))),
            kj::str("cannot read CA certificate ", missing, ": No such file or directory"));
  EXPECT_EQ(make(Files(pki().key("server"), pki().key("server"), pki().cert("ca"))),
            kj::str("TLS certificate ", pki().key("server"), " is not a PEM certificate"));
  EXPECT_EQ(make(Files(pki().cert("server"), pki().cert("server"), pki().cert("ca"))),
            kj::str("TLS key ", pki().cert("server"), " is not an unencrypted PEM private key"));
  EXPECT_EQ(make(Files(pki().cert("server"), pki().key("alice"), pki().cert("ca"))),
            kj::str("TLS key ", pki().key("alice"), " does not belong to the certificate ",
                    pki().cert("server")));
  EXPECT_EQ(make(Files("other-server", "ca")),
            kj::str("TLS certificate ", pki().cert("other-server"), " is not signed by the CA in ",
                    pki().cert("ca")));
  EXPECT_EQ(make(Files("alice", "ca")),
            kj::str("TLS certificate ", pki().cert("alice"),
                    " is not valid for a server under the CA in ", pki().cert("ca"),
                    ": unsuitable certificate purpose"));
  EXPECT_EQ(make(Files(pki().cert("server"), pki().key("server"), pki().cert("server"))),
            kj::str("CA certificate ", pki().cert("server"), " is not a CA certificate"));
  EXPECT_EQ(make(Files("server", "ca")), "(nothing thrown)");
}

TEST(ServerTls, RefusesInTheHandshakeAClientCertThatNamesNoUser) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);

  struct Case {
    kj::StringPtr cert;
    kj::StringPtr reason;
  };
  Case cases[] = {
      {"two-cns", "client certificate has more than one common name"},
      {"multi-valued-cn", "client certificate has more than one common name"},
      {"escape-cn", "client certificate's common name contains a control character"},
      {"nul-cn", "client certificate's common name contains a control character"},
      {"newline-cn", "client certificate's common name contains a control character"},
      {"c1-cn", "client certificate's common name contains a control character"},
      {"bit-string-cn", "client certificate's common name is not valid UTF-8"},
      {"empty-cn", "client certificate has an empty common name"},
      {"no-cn", "client certificate has no common name"},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.cert.cStr());
    // The client's certificate is from the CA; only its name is wrong.
    ClientTls client(Files(c.cert, "ca"), ClientTls::CertCheck::SKIP);
    auto reply = pingWithClientTls(io, client, server.address(), "localhost");
    // The refusal is the server's alert, which a TLS 1.3 client reads after its handshake.
    EXPECT_TRUE(contains(reply, "alert bad certificate")) << reply.cStr();

    auto outcome = server.nextOutcome().wait(io.waitScope);
    EXPECT_FALSE(outcome.handshake);
    EXPECT_FALSE(outcome.accepted);
    EXPECT_EQ(outcome.errorType, kj::Exception::Type::FAILED);
    EXPECT_TRUE(outcome.error.startsWith("TLS handshake with 127.0.0.1:")) << outcome.error.cStr();
    EXPECT_TRUE(outcome.error.endsWith(kj::str(" failed: ", c.reason))) << outcome.error.cStr();
    EXPECT_TRUE(isPrintableAscii(outcome.error)) << outcome.error.cStr();
  }

  // A raw OpenSSL client sees the same alert; the server then serves the next client as usual.
  RawClientOptions options;
  options.certificate = "two-cns";
  auto raw = runRawClient(io, server.port(), options);
  EXPECT_TRUE(contains(raw.reply, "bad certificate")) << raw.reply.cStr();
  EXPECT_TRUE(contains(server.nextOutcome().wait(io.waitScope).error,
                       "failed: client certificate has more than one common name"));
  ClientTls alice(Files("alice", "ca"));
  EXPECT_EQ(pingWithClientTls(io, alice, server.address(), "localhost"), "pong");
  EXPECT_EQ(server.nextOutcome().wait(io.waitScope).user, "alice");
}

TEST(ServerTls, AcceptsANameThatIsNotAscii) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  ClientTls client(Files("jose", "ca"));

  EXPECT_EQ(pingWithClientTls(io, client, server.address(), "localhost"), "pong");
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_TRUE(outcome.accepted) << outcome.error.cStr();
  EXPECT_EQ(outcome.user, "Jos\xc3\xa9");
}

TEST(ServerTls, PeerCommonNameRefusesANameThatAnotherHandshakeLetThrough) {
  // kj-tls alone completes these handshakes; its getCommonName() would say "admin" for the first
  // and hand over the raw escape sequence for the second.
  auto io = kj::setupAsyncIo();
  KjOnlyServerTls kjOnly;
  TestServer server(
      io, [&kjOnly](kj::AuthenticatedStream plain) { return kjOnly.wrapServer(kj::mv(plain)); });

  struct Case {
    kj::StringPtr cert;
    kj::StringPtr error;
  };
  Case cases[] = {
      {"two-cns", "client certificate has more than one common name: \"admin\", \"bob\""},
      // DER sorts the members of a multi-valued RDN (the shorter encoding first).
      {"multi-valued-cn", "client certificate has more than one common name: \"bob\", \"admin\""},
      {"escape-cn",
       "client certificate's common name contains a control character: "
       "\"bob\\x1b[2J\\x1b[31mroot\""},
      {"nul-cn",
       "client certificate's common name contains a control character: \"admin\\x00bob\""},
      {"newline-cn",
       "client certificate's common name contains a control character: "
       "\"bob\\x0arefused connection peer=x\""},
      {"c1-cn",
       "client certificate's common name contains a control character: \"bob\\xc2\\x9b31m\""},
      {"bit-string-cn", "client certificate's common name is not valid UTF-8: \"\\xff\\xfe\""},
      {"empty-cn", "client certificate has an empty common name: \"\""},
      {"no-cn", "client certificate has no common name"},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.cert.cStr());
    ClientTls client(Files(c.cert, "ca"), ClientTls::CertCheck::SKIP);
    auto reply = pingWithClientTls(io, client, server.address(), "localhost");
    EXPECT_NE(reply, "pong");
    auto outcome = server.nextOutcome().wait(io.waitScope);
    EXPECT_TRUE(outcome.handshake);
    EXPECT_FALSE(outcome.accepted);
    EXPECT_EQ(outcome.error, c.error) << outcome.error.cStr();
  }
}

TEST(ClientTls, ConstructionRefusesAClientCertThatNamesNoUser) {
  EXPECT_EQ(errorOf([]() { ClientTls(Files("two-cns", "ca")); }),
            kj::str("TLS certificate ", pki().cert("two-cns"),
                    " names no user: client certificate has more than one common name: "
                    "\"admin\", \"bob\""));
  EXPECT_EQ(errorOf([]() { ClientTls(Files("escape-cn", "ca")); }),
            kj::str("TLS certificate ", pki().cert("escape-cn"),
                    " names no user: client certificate's common name contains a control "
                    "character: \"bob\\x1b[2J\\x1b[31mroot\""));
  EXPECT_EQ(errorOf([]() { ClientTls(Files("jose", "ca")); }), "(nothing thrown)");
  // Only a client certificate must name a user.
  EXPECT_EQ(errorOf([]() { ClientTls(Files("no-cn", "ca"), ClientTls::CertCheck::SKIP); }),
            "(nothing thrown)");
}

TEST(TestCertificates, RunnerCertsMakesOnlyOneOfTheBadNames) {
  // Why the tests make their bad certificates themselves: runner-certs' library refuses control
  // characters below 0x80 (and can put only one CN in a subject). It does make a name with a C1
  // control character, which the server refuses (RefusesInTheHandshakeAClientCertThatNamesNoUser).
  auto ca = certs::Authority::create("test CA", certs::Validity::forDays(1));
  auto day = certs::Validity::forDays(1);
  EXPECT_NE(errorOf([&]() { ca.issueClient("bob\x1b[31m", day); }), "(nothing thrown)");
  EXPECT_NE(errorOf([&]() { ca.issueClient("bob\nadmin", day); }), "(nothing thrown)");
  EXPECT_EQ(errorOf([&]() { ca.issueClient("bob\u009b31m", day); }), "(nothing thrown)");
}

TEST(ServerTls, SendsNoSessionTickets) {
  auto io = kj::setupAsyncIo();
  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);

  auto result = runRawClient(io, server.port(), {});
  ASSERT_TRUE(result.handshake) << result.error.cStr();
  EXPECT_EQ(result.reply, "pong");
  EXPECT_EQ(result.tickets, 0u);
  EXPECT_FALSE(result.resumable);
  EXPECT_TRUE(server.nextOutcome().wait(io.waitScope).accepted);
}

TEST(ServerTls, KjTlsAloneSendsTicketsThatFailEveryResumption) {
  // What SendsNoSessionTickets guards against, and proof that the raw client notices tickets.
  auto io = kj::setupAsyncIo();
  KjOnlyServerTls kjOnly;
  TestServer server(
      io, [&kjOnly](kj::AuthenticatedStream plain) { return kjOnly.wrapServer(kj::mv(plain)); });

  auto first = runRawClient(io, server.port(), {});
  EXPECT_EQ(first.reply, "pong");
  EXPECT_GT(first.tickets, 0u);
  EXPECT_TRUE(first.resumable);
  ASSERT_NE(first.lastTicket.get(), nullptr);
  EXPECT_TRUE(server.nextOutcome().wait(io.waitScope).accepted);

  RawClientOptions options;
  options.resume = first.lastTicket.get();
  auto second = runRawClient(io, server.port(), options);
  EXPECT_NE(second.reply, "pong");
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_FALSE(outcome.accepted);
  EXPECT_TRUE(contains(outcome.error, "session id context uninitialized")) << outcome.error.cStr();
}

TEST(ServerTls, AClientThatOffersATicketGetsAFullHandshake) {
  // A ticket from elsewhere (here: from kj-tls alone, with the same certificates) is not resumed,
  // and the connection goes on as a new one, with the client verified again.
  auto io = kj::setupAsyncIo();
  Session ticket;
  {
    KjOnlyServerTls kjOnly;
    TestServer issuer(
        io, [&kjOnly](kj::AuthenticatedStream plain) { return kjOnly.wrapServer(kj::mv(plain)); });
    auto first = runRawClient(io, issuer.port(), {});
    ASSERT_NE(first.lastTicket.get(), nullptr);
    ticket = kj::mv(first.lastTicket);
    EXPECT_TRUE(issuer.nextOutcome().wait(io.waitScope).accepted);
  }

  ServerTls serverTls(Files("server", "ca"), io.provider->getTimer(), TEST_TIMEOUT);
  TestServer server(io, serverTls);
  RawClientOptions options;
  options.resume = ticket.get();
  auto result = runRawClient(io, server.port(), options);
  ASSERT_TRUE(result.handshake) << result.error.cStr();
  EXPECT_FALSE(result.resumed);
  EXPECT_EQ(result.reply, "pong");
  EXPECT_EQ(result.tickets, 0u);
  auto outcome = server.nextOutcome().wait(io.waitScope);
  EXPECT_TRUE(outcome.accepted) << outcome.error.cStr();
  EXPECT_EQ(outcome.user, "alice");
}

}  // namespace
}  // namespace tls
}  // namespace runner

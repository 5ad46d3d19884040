#include "tls/tls-config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <malloc.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <string.h>

#include <utility>

#include "tls/client-name.h"

namespace runner {
namespace tls {

namespace {

// Refuses to ask for a passphrase: the keys runner uses are not encrypted, and a server must never
// stop to prompt on a terminal.
int noPassphrase(char*, int, int, void*) {
  return -1;
}

kj::String readFile(kj::StringPtr what, kj::StringPtr path) {
  if (path.size() == 0) KJ_FAIL_REQUIRE(kj::str("no ", what, " file given"));
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) KJ_FAIL_REQUIRE(kj::str("cannot read ", what, " ", path, ": ", strerror(errno)));
  kj::AutoCloseFd file(fd);
  return kj::FdInputStream(file.get()).readAllText(1 << 20);
}

// The certificates in a PEM file, in order. Owns them.
class CertList {
 public:
  CertList(kj::StringPtr what, kj::StringPtr path, kj::StringPtr pem) : stack(sk_X509_new_null()) {
    KJ_ASSERT(stack != nullptr);
    BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
    KJ_ASSERT(bio != nullptr);
    KJ_DEFER(BIO_free(bio));
    while (X509* cert = PEM_read_bio_X509(bio, nullptr, noPassphrase, nullptr)) {
      KJ_ASSERT(sk_X509_push(stack, cert) > 0);
    }
    ERR_clear_error();  // the loop always ends with a "no start line" error
    if (size() == 0) {
      sk_X509_pop_free(stack, X509_free);
      KJ_FAIL_REQUIRE(kj::str(what, " ", path, " is not a PEM certificate"));
    }
  }
  ~CertList() noexcept(false) { sk_X509_pop_free(stack, X509_free); }
  KJ_DISALLOW_COPY(CertList);

  size_t size() const { return sk_X509_num(stack); }
  X509* first() const { return sk_X509_value(stack, 0); }
  STACK_OF(X509) * get() const { return stack; }

 private:
  STACK_OF(X509) * stack;
};

EVP_PKEY* parseKey(kj::StringPtr path, kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, noPassphrase, nullptr);
  if (key == nullptr) {
    ERR_clear_error();
    KJ_FAIL_REQUIRE(kj::str("TLS key ", path, " is not an unencrypted PEM private key"));
  }
  return key;
}

// What the certificate must be good for, as X509_verify_cert checks it (extendedKeyUsage).
enum class Role { SERVER, CLIENT };

// Checks that the leaf of `certs` verifies against a store holding only `ca`, for `role`.
void checkSignedByCa(const TlsFiles& files, const CertList& certs, X509* ca, Role role) {
  X509_STORE* store = X509_STORE_new();
  KJ_ASSERT(store != nullptr);
  KJ_DEFER(X509_STORE_free(store));
  KJ_ASSERT(X509_STORE_add_cert(store, ca) == 1);

  X509_STORE_CTX* context = X509_STORE_CTX_new();
  KJ_ASSERT(context != nullptr);
  KJ_DEFER(X509_STORE_CTX_free(context));
  KJ_ASSERT(X509_STORE_CTX_init(context, store, certs.first(), certs.get()) == 1);
  KJ_ASSERT(X509_STORE_CTX_set_purpose(context, role == Role::SERVER
                                                    ? X509_PURPOSE_SSL_SERVER
                                                    : X509_PURPOSE_SSL_CLIENT) == 1);

  if (X509_verify_cert(context) != 1) {
    ERR_clear_error();
    int error = X509_STORE_CTX_get_error(context);
    if (error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
        error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
        error == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
        error == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN) {
      KJ_FAIL_REQUIRE(
          kj::str("TLS certificate ", files.cert, " is not signed by the CA in ", files.ca));
    }
    KJ_FAIL_REQUIRE(kj::str("TLS certificate ", files.cert, " is not valid ",
                            role == Role::SERVER ? "for a server" : "for a client",
                            " under the CA in ", files.ca, ": ",
                            X509_verify_cert_error_string(error)));
  }
}

// The files' contents after every check has passed.
struct CheckedFiles {
  kj::String cert;
  kj::String key;
  kj::String ca;
};

CheckedFiles readAndCheck(const TlsFiles& files, Role role, bool requireSignedByCa) {
  CheckedFiles result{readFile("TLS certificate", files.cert), readFile("TLS key", files.key),
                      readFile("CA certificate", files.ca)};

  CertList certs("TLS certificate", files.cert, result.cert);
  EVP_PKEY* key = parseKey(files.key, result.key);
  KJ_DEFER(EVP_PKEY_free(key));
  CertList ca("CA certificate", files.ca, result.ca);

  if (ca.size() != 1) {
    KJ_FAIL_REQUIRE(kj::str("CA certificate ", files.ca, " holds ", ca.size(),
                            " certificates; runner trusts exactly one CA"));
  }
  if (X509_check_ca(ca.first()) == 0) {
    KJ_FAIL_REQUIRE(kj::str("CA certificate ", files.ca, " is not a CA certificate"));
  }
  if (X509_check_private_key(certs.first(), key) != 1) {
    ERR_clear_error();
    KJ_FAIL_REQUIRE(
        kj::str("TLS key ", files.key, " does not belong to the certificate ", files.cert));
  }
  if (requireSignedByCa) {
    checkSignedByCa(files, certs, ca.first(), role);
    if (role == Role::CLIENT) {
      KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { clientNameOf(certs.first()); })) {
        KJ_FAIL_REQUIRE(kj::str("TLS certificate ", files.cert,
                                " names no user: ", exception->getDescription()));
      }
    }
  }
  return result;
}

kj::TlsContext::Options tls13Options(const kj::TlsCertificate& ca, const kj::TlsKeypair& keypair) {
  kj::TlsContext::Options options;
  options.useSystemTrustStore = false;
  options.trustedCertificates = kj::arrayPtr(&ca, 1);
  options.minVersion = TLS_1_3_ONLY;
  options.defaultKeypair = keypair;
  // On a server this demands a client certificate. On a client it makes OpenSSL verify the
  // server during the handshake (SSL_VERIFY_PEER) and abort with an alert, rather than kj-tls
  // finding the problem only after the handshake has completed.
  options.verifyClients = true;
  return options;
}

// kj-tls 0.9.2 keeps a TlsContext's SSL_CTX and a TlsPeerIdentity's certificate to itself (no
// later release has accessors either), yet runner must set what kj-tls does not: no session
// tickets, and a check of the client's name during the handshake. An explicit instantiation may
// name private members (the usual access checks do not apply to its template arguments), and this
// one hands out a pointer to each member; the compiler still checks each member's name and type,
// so a kj-tls that changes them fails to build rather than misbehaving.
// TODO(cleanup): use accessors instead if kj-tls ever offers them.
struct SslContextMember {
  using Type = void* kj::TlsContext::*;
  friend Type memberPointer(SslContextMember);
};
struct PeerCertificateMember {
  using Type = void* kj::TlsPeerIdentity::*;
  friend Type memberPointer(PeerCertificateMember);
};
template <typename Member, typename Member::Type pointer>
struct ExposeMember {
  friend typename Member::Type memberPointer(Member) { return pointer; }
};
template struct ExposeMember<SslContextMember, &kj::TlsContext::ctx>;
template struct ExposeMember<PeerCertificateMember, &kj::TlsPeerIdentity::cert>;

SSL_CTX* sslContextOf(kj::TlsContext& context) {
  return static_cast<SSL_CTX*>(context.*memberPointer(SslContextMember()));
}

// Null when the peer presented no certificate.
X509* certificateOf(kj::TlsPeerIdentity& identity) {
  return static_cast<X509*>(identity.*memberPointer(PeerCertificateMember()));
}

// The reasons the handshake gives for refusing a client's name. A verify callback can only pass a
// reason on through OpenSSL's error queue, whose entries kj-tls turns into the text of the
// exception it throws; so each reason is registered, once per process, as an error of an OpenSSL
// "library" of runner's own, and the callback raises that error. handshakeFailureReason() then
// finds it as the first line (OpenSSL's own "certificate verify failed" comes after it).
constexpr int CHECK_FAILED_REASON = 100;
constexpr int REVOKED_REASON = 101;
constexpr int CRL_EXPIRED_REASON = 102;

int refusalLibrary() {
  static const int library = []() {
    int number = ERR_get_next_error_library();
    KJ_ASSERT(number > 0);
    auto entry = [number](int reason, kj::StringPtr text) {
      return ERR_STRING_DATA{ERR_PACK(number, 0, reason), text.cStr()};
    };
    auto problem = [&entry](NameProblem problem) {
      return entry(int(problem) + 1, describe(problem));
    };
    // OpenSSL keeps pointers into this table, and the table ends at the first zero code.
    static ERR_STRING_DATA strings[] = {
        entry(0, "runner"),
        problem(NameProblem::NO_COMMON_NAME),
        problem(NameProblem::SEVERAL_COMMON_NAMES),
        problem(NameProblem::EMPTY_COMMON_NAME),
        problem(NameProblem::NOT_UTF8),
        problem(NameProblem::CONTROL_CHARACTER),
        entry(CHECK_FAILED_REASON, "client certificate's name could not be checked"),
        entry(REVOKED_REASON, "client certificate is revoked (listed in --tls-crl)"),
        entry(CRL_EXPIRED_REASON,
              "the revocation list (--tls-crl) is past its next update; renew it "
              "(runner-certs revoke) and reload runnerd"),
        {0, nullptr},
    };
    KJ_ASSERT(ERR_load_strings_const(strings) == 1);
    return number;
  }();
  return library;
}

// SSL_CTX_set_verify's callback on runnerd's side: once OpenSSL has verified the client's chain,
// refuses a leaf certificate that names no user (see client-name.h), with a "bad certificate"
// alert to the client. Never throws: OpenSSL's C frames are below it.
int verifyClientName(int preverified, X509_STORE_CTX* store) {
  if (preverified != 1 && X509_STORE_CTX_get_error_depth(store) == 0) {
    // Said in runner's words: OpenSSL's own line is only "certificate verify failed".
    switch (X509_STORE_CTX_get_error(store)) {
      case X509_V_ERR_CERT_REVOKED:
        ERR_raise(refusalLibrary(), REVOKED_REASON);
        break;
      case X509_V_ERR_CRL_HAS_EXPIRED:
        ERR_raise(refusalLibrary(), CRL_EXPIRED_REASON);
        break;
    }
  }
  if (preverified != 1 || X509_STORE_CTX_get_error_depth(store) != 0) return preverified;
  int reason = CHECK_FAILED_REASON;
  auto exception = kj::runCatchingExceptions([&]() {
    KJ_IF_MAYBE (problem, checkClientName(X509_STORE_CTX_get_current_cert(store))) {
      reason = int(*problem) + 1;
    } else {
      reason = 0;
    }
  });
  if (exception == nullptr && reason == 0) return 1;
  X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
  ERR_raise(refusalLibrary(), reason);
  return 0;
}

// The part of an OpenSSL error that a person can act on: kj-tls reports "OpenSSL error;
// message = error:0A000412:SSL routines::sslv3 alert bad certificate".
kj::String handshakeFailureReason(const kj::Exception& exception) {
  kj::StringPtr text = exception.getDescription();
  if (text.startsWith("OpenSSL error")) {
    KJ_IF_MAYBE (pos, text.findFirst('=')) {
      text = text.slice(*pos + 1);
    }
  }
  while (text.startsWith(" ")) text = text.slice(1);
  auto line = kj::heapString(text.slice(0, text.findFirst('\n').orDefault(text.size())));
  if (line.startsWith("error:")) {
    // "error:CODE:LIBRARY:FUNCTION:REASON"
    size_t colons = 0;
    for (size_t i = 0; i < line.size(); i++) {
      if (line[i] == ':' && ++colons == 4) return kj::str(line.slice(i + 1));
    }
  }
  return line;
}

bool isIpAddress(kj::StringPtr text, int& family, unsigned char* buffer) {
  if (inet_pton(AF_INET, text.cStr(), buffer) == 1) {
    family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.cStr(), buffer) == 1) {
    family = AF_INET6;
    return true;
  }
  return false;
}

// Gathers kj-tls's small socket writes into large ones and serves its small reads from a large
// one. kj-tls 0.9.2 moves ciphertext through 8 KiB buffers (its ReadyOutputStreamWrapper and
// ReadyInputStreamWrapper) and waits for each write: streaming a 128 KiB chunk of output cost
// some 40 write() calls on the server and 16 read() calls on the client. This stream accepts each
// write at once, copying it into a batch that goes out when the event loop has nothing else to do
// or when it holds BATCH_BYTES; a writer waits only while a full batch is still on its way.
// Memory: two batches and one read buffer per connection.
class BatchingStream final : public kj::AsyncIoStream, private kj::TaskSet::ErrorHandler {
 public:
  // Whether the peer has sent anything; outlives the stream (a failed handshake drops it).
  struct Heard : public kj::Refcounted {
    bool anything = false;
  };

  explicit BatchingStream(kj::Own<kj::AsyncIoStream> inner)
      : inner(kj::mv(inner)), heard(kj::refcounted<Heard>()), tasks(*this) {}

  kj::Own<Heard> whetherHeard() { return kj::addRef(*heard); }

  ~BatchingStream() noexcept(false) {
    // What is still gathered (a TLS alert before a refused connection is dropped, say) goes to the
    // socket now if it has room: a socket stream writes as much as it can within write().
    if (!sending && batch.size() > 0 && failure == nullptr) {
      kj::runCatchingExceptions([this]() { inner->write(batch.begin(), batch.size()); });
    }
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    auto out = reinterpret_cast<kj::byte*>(buffer);
    size_t n = kj::min(maxBytes, readEnd - readStart);
    if (n > 0) memcpy(out, readBuffer.begin() + readStart, n);
    readStart += n;
    if (n >= minBytes) return n;
    if (maxBytes - n >= READ_BYTES) {
      return inner->tryRead(out + n, minBytes - n, maxBytes - n).then([this, n](size_t m) {
        if (m > 0) heard->anything = true;
        return n + m;
      });
    }
    if (readBuffer == nullptr) readBuffer = kj::heapArray<kj::byte>(READ_BYTES);
    return inner->tryRead(readBuffer.begin(), 1, readBuffer.size())
        .then([this, out, n, minBytes, maxBytes](size_t m) -> kj::Promise<size_t> {
          if (m > 0) heard->anything = true;
          readStart = 0;
          readEnd = m;
          if (m == 0) return n;
          return tryRead(out + n, minBytes - n, maxBytes - n).then([n](size_t k) { return n + k; });
        });
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    KJ_IF_MAYBE (e, failure) {
      return kj::cp(*e);
    }
    if (batch.size() >= BATCH_BYTES) {
      return whenSent().then([this, buffer, size]() { return write(buffer, size); });
    }
    reserve();
    batch.addAll(kj::arrayPtr(reinterpret_cast<const kj::byte*>(buffer), size));
    gathered();
    return kj::READY_NOW;
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    KJ_IF_MAYBE (e, failure) {
      return kj::cp(*e);
    }
    if (batch.size() >= BATCH_BYTES) {
      return whenSent().then([this, pieces]() { return write(pieces); });
    }
    reserve();
    for (auto piece : pieces) batch.addAll(piece);
    gathered();
    return kj::READY_NOW;
  }

  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }

  void shutdownWrite() override {
    shutdownPending = true;
    if (!sending && batch.size() == 0) inner->shutdownWrite();
  }

  void abortRead() override { inner->abortRead(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override {
    inner->getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, kj::uint* length) override {
    inner->getpeername(addr, length);
  }

 private:
  static constexpr size_t BATCH_BYTES = 64 * 1024;
  // What a batch may hold past BATCH_BYTES: the last write before it is full (kj-tls writes at
  // most 8 KiB at a time, a TLS record is at most 16 KiB and change).
  static constexpr size_t BATCH_SLACK = 24 * 1024;
  static constexpr size_t READ_BYTES = 64 * 1024;

  kj::Own<kj::AsyncIoStream> inner;
  kj::Own<Heard> heard;
  kj::Vector<kj::byte> batch;
  kj::Vector<kj::byte> outgoing;
  bool sending = false;
  bool sendScheduled = false;
  bool shutdownPending = false;
  kj::Maybe<kj::Exception> failure;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiters;
  kj::Array<kj::byte> readBuffer;
  size_t readStart = 0;
  size_t readEnd = 0;
  kj::TaskSet tasks;

  // Sizes the batch once, so that it never grows by doubling.
  void reserve() {
    if (batch.capacity() == 0) batch.reserve(BATCH_BYTES + BATCH_SLACK);
  }

  // Sends a full batch now, anything else once the event loop has nothing else to do.
  void gathered() {
    if (sending) return;
    if (batch.size() >= BATCH_BYTES) {
      sendBatch();
    } else if (!sendScheduled) {
      sendScheduled = true;
      tasks.add(kj::evalLast([this]() {
        sendScheduled = false;
        if (!sending && batch.size() > 0) sendBatch();
      }));
    }
  }

  // Writes the batch; what is written meanwhile gathers into the next one.
  void sendBatch() {
    sending = true;
    std::swap(batch, outgoing);
    // evalNow: the inner stream may throw at once (EPIPE) rather than reject; either way the
    // failure must reach taskFailed(), which fails the waiting and later writes.
    auto written =
        kj::evalNow([this]() { return inner->write(outgoing.begin(), outgoing.size()); });
    tasks.add(written.then([this]() {
      outgoing.clear();
      sending = false;
      for (auto& waiter : waiters) waiter->fulfill();
      waiters.clear();
      if (batch.size() > 0) {
        sendBatch();
      } else if (shutdownPending) {
        inner->shutdownWrite();
      }
    }));
  }

  kj::Promise<void> whenSent() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiters.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  void taskFailed(kj::Exception&& exception) override {
    for (auto& waiter : waiters) waiter->reject(kj::cp(exception));
    waiters.clear();
    if (failure == nullptr) failure = kj::mv(exception);
  }
};

// The text of an X509_NAME, one line, for the log.
kj::String nameText(X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  char* data;
  long size = BIO_get_mem_data(bio, &data);
  return kj::heapString(data, size);
}

kj::String describeCertificate(X509* cert) {
  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr);
  KJ_ASSERT(serial != nullptr);
  KJ_DEFER(BN_free(serial));
  char* hex = BN_bn2hex(serial);
  KJ_ASSERT(hex != nullptr);
  KJ_DEFER(OPENSSL_free(hex));
  BIO* bio = BIO_new(BIO_s_mem());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  ASN1_TIME_print(bio, X509_get0_notAfter(cert));
  char* data;
  long size = BIO_get_mem_data(bio, &data);
  return kj::str(nameText(X509_get_subject_name(cert)), ", serial ", hex, ", valid until ",
                 kj::heapString(data, size));
}

// Adds the CRLs of `path` to `ssl`'s trust store and has every client certificate checked against
// them. Each must be signed by `ca` and not be past its next update. Returns how many
// certificates they list.
size_t loadRevocationLists(SSL_CTX* ssl, X509* ca, kj::StringPtr path) {
  auto pem = readFile("revocation list", path);
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  X509_STORE* store = SSL_CTX_get_cert_store(ssl);
  size_t lists = 0, revoked = 0;
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, noPassphrase, nullptr)) {
    KJ_DEFER(X509_CRL_free(crl));
    ++lists;
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0 ||
        X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
      ERR_clear_error();
      KJ_FAIL_REQUIRE(kj::str("revocation list ", path, " is not signed by the CA"));
    }
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
    if (next != nullptr && X509_cmp_current_time(next) <= 0) {
      KJ_FAIL_REQUIRE(kj::str("revocation list ", path,
                              " is past its next update; renew it (runner-certs revoke)"));
    }
    KJ_ASSERT(X509_STORE_add_crl(store, crl) == 1);
    // An empty list has no stack at all (and sk_num(nullptr) is -1).
    revoked += kj::max(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 0);
  }
  ERR_clear_error();  // the loop always ends with a "no start line" error
  if (lists == 0) {
    KJ_FAIL_REQUIRE(kj::str("revocation list ", path, " is not a PEM certificate revocation list"));
  }
  // The client's own certificate is checked (CRL_CHECK); runner's chains have no intermediates.
  KJ_ASSERT(X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK) == 1);
  return revoked;
}

}  // namespace

// =======================================================================================
// ServerTls

ServerTls::ServerTls(const TlsFiles& files, kj::Timer& timer, kj::Duration handshakeTimeout)
    : handshakeTimeout(handshakeTimeout) {
  auto checked = readAndCheck(files, Role::SERVER, true);
  kj::TlsCertificate ca(checked.ca);
  kj::TlsKeypair keypair{kj::TlsPrivateKey(checked.key), kj::TlsCertificate(checked.cert)};

  auto options = tls13Options(ca, keypair);
  options.timer = timer;
  options.acceptTimeout = handshakeTimeout;
  context = kj::heap<kj::TlsContext>(kj::mv(options));

  SSL_CTX* ssl = sslContextOf(*context);
  // No session tickets and no session cache. kj-tls sets no session id context, and OpenSSL
  // refuses to resume a session with a verified client certificate without one ("session id
  // context uninitialized"): every ticket the server sent was useless, and every client that
  // offered one got a failed handshake. A TLS 1.3 server that sends no tickets (and has no
  // cache) never resumes; each connection is a full handshake that verifies the client again.
  KJ_ASSERT(SSL_CTX_set_num_tickets(ssl, 0) == 1);
  SSL_CTX_set_options(ssl, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
  // Keeps kj-tls's mode (a client certificate is required) and adds the name check.
  refusalLibrary();
  SSL_CTX_set_verify(ssl, SSL_CTX_get_verify_mode(ssl), verifyClientName);

  CertList cert("TLS certificate", files.cert, checked.cert);
  CertList caCert("CA certificate", files.ca, checked.ca);
  loaded.certificate = describeCertificate(cert.first());
  loaded.ca = nameText(X509_get_subject_name(caCert.first()));
  if (files.crl != nullptr && files.crl.size() > 0) {
    loaded.revoked = loadRevocationLists(ssl, caCert.first(), files.crl);
  }
}

kj::Promise<kj::AuthenticatedStream> ServerTls::wrapServer(kj::AuthenticatedStream stream) {
  auto peer = stream.peerIdentity->toString();
  auto timeout = handshakeTimeout;
  auto batching = kj::heap<BatchingStream>(kj::mv(stream.stream));
  auto heard = batching->whetherHeard();
  stream.stream = kj::mv(batching);
  return kj::evalNow([&]() { return context->wrapServer(kj::mv(stream)); })
      .catch_([peer = kj::mv(peer), timeout, heard = kj::mv(heard)](
                  kj::Exception&& exception) -> kj::Promise<kj::AuthenticatedStream> {
        if (exception.getType() == kj::Exception::Type::OVERLOADED) {
          return kj::Exception(exception.getType(), __FILE__, __LINE__,
                               kj::str("TLS handshake with ", peer, " failed: no handshake within ",
                                       timeout));
        }
        if (!heard->anything) {
          return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                               kj::str("TLS handshake with ", peer, " failed: ", CLOSED_SILENT));
        }
        return kj::Exception(exception.getType(), __FILE__, __LINE__,
                             kj::str("TLS handshake with ", peer, " failed: ",
                                     handshakeFailureReason(exception)));
      });
}

namespace {
constexpr kj::StringPtr REFUSAL_NAMES[] = {
    "timeout"_kj,         "disconnected"_kj, "protocol"_kj,    "no_certificate"_kj,
    "bad_certificate"_kj, "revoked"_kj,      "bad_name"_kj,    "crl_expired"_kj,
    "other"_kj,           "silent"_kj,
};
static_assert(kj::size(REFUSAL_NAMES) == HANDSHAKE_REFUSALS, "a name for each refusal");
}  // namespace

kj::StringPtr refusalName(HandshakeRefusal refusal) {
  return REFUSAL_NAMES[static_cast<uint>(refusal)];
}

HandshakeRefusal classifyRefusal(const kj::Exception& failure) {
  if (strstr(failure.getDescription().cStr(), CLOSED_SILENT.cStr()) != nullptr) {
    return HandshakeRefusal::SILENT;
  }
  switch (failure.getType()) {
    case kj::Exception::Type::OVERLOADED: return HandshakeRefusal::TIMEOUT;
    case kj::Exception::Type::DISCONNECTED: return HandshakeRefusal::DISCONNECTED;
    default: break;
  }
  // The texts are runner's own (refusalLibrary()) or OpenSSL's reason strings.
  auto text = failure.getDescription();
  auto has = [&text](kj::StringPtr part) { return strstr(text.cStr(), part.cStr()) != nullptr; };
  if (has(describe(NameProblem::NO_COMMON_NAME)) ||
      has(describe(NameProblem::SEVERAL_COMMON_NAMES)) ||
      has(describe(NameProblem::EMPTY_COMMON_NAME)) || has(describe(NameProblem::NOT_UTF8)) ||
      has(describe(NameProblem::CONTROL_CHARACTER)) || has("name could not be checked")) {
    return HandshakeRefusal::BAD_NAME;
  }
  if (has("certificate is revoked")) return HandshakeRefusal::REVOKED;
  if (has("revocation list")) return HandshakeRefusal::CRL_EXPIRED;
  if (has("unexpected eof") || has("Connection reset") || has("Broken pipe")) {
    return HandshakeRefusal::DISCONNECTED;
  }
  if (has("did not return a certificate")) return HandshakeRefusal::NO_CERTIFICATE;
  if (has("certificate") || has("unknown ca")) return HandshakeRefusal::BAD_CERTIFICATE;
  if (has("version") || has("protocol") || has("http request") || has("record") ||
      has("wrong") || has("no shared cipher") || has("no suitable")) {
    return HandshakeRefusal::PROTOCOL;
  }
  return HandshakeRefusal::OTHER;
}

kj::String ServerTls::peerCommonName(kj::PeerIdentity& identity) {
  KJ_IF_MAYBE (tlsIdentity, kj::dynamicDowncastIfAvailable<kj::TlsPeerIdentity>(identity)) {
    X509* cert = certificateOf(*tlsIdentity);
    if (cert == nullptr) {
      KJ_FAIL_REQUIRE(kj::str("peer ", tlsIdentity->getNetworkIdentity().toString(),
                              " presented no client certificate"));
    }
    // wrapServer() has refused a certificate that names no user already; this keeps the promise
    // for an identity from anywhere else.
    return clientNameOf(cert);
  }
  KJ_FAIL_REQUIRE("connection is not authenticated by TLS", identity.toString());
}

// =======================================================================================
// ClientTls

ClientTls::ClientTls(const TlsFiles& files, CertCheck check) {
  auto checked = readAndCheck(files, Role::CLIENT, check == CertCheck::SIGNED_BY_CA);
  kj::TlsCertificate ca(checked.ca);
  kj::TlsKeypair keypair{kj::TlsPrivateKey(checked.key), kj::TlsCertificate(checked.cert)};
  context = kj::heap<kj::TlsContext>(tls13Options(ca, keypair));
}

kj::Promise<kj::Own<kj::AsyncIoStream>> ClientTls::connect(kj::Network& network,
                                                           kj::StringPtr address,
                                                           kj::StringPtr serverName) {
  auto name = expectedName(serverName.size() > 0 ? kj::str(serverName) : hostOf(address));
  return network.parseAddress(address)
      .then([](kj::Own<kj::NetworkAddress> parsed) {
        return parsed->connect().attach(kj::mv(parsed));
      })
      .then([this, name = kj::mv(name)](kj::Own<kj::AsyncIoStream> stream) {
        return context->wrapClient(kj::heap<BatchingStream>(kj::mv(stream)), name);
      });
}

kj::String ClientTls::hostOf(kj::StringPtr address) {
  if (address.startsWith("[")) {
    KJ_IF_MAYBE (close, address.findFirst(']')) {
      if (address.slice(*close + 1).startsWith(":") && address.size() > *close + 2) {
        return kj::heapString(address.slice(1, *close));
      }
    }
  } else {
    KJ_IF_MAYBE (colon, address.findLast(':')) {
      bool oneColon = address.findFirst(':') == *colon;
      if (oneColon && *colon > 0 && *colon + 1 < address.size()) {
        return kj::heapString(address.slice(0, *colon));
      }
    }
  }
  KJ_FAIL_REQUIRE(kj::str("server address must be HOST:PORT or [IPV6]:PORT: ", address));
}

kj::String ClientTls::expectedName(kj::StringPtr name) {
  unsigned char buffer[sizeof(struct in6_addr)];
  int family;
  if (!isIpAddress(name, family, buffer)) return kj::str(name);
  char text[INET6_ADDRSTRLEN];
  KJ_ASSERT(inet_ntop(family, buffer, text, sizeof(text)) != nullptr, name);
  return kj::str(text);
}

void tuneAllocatorForStreaming() {
  // Blocks up to 1 MiB come from the heap, and up to 16 MiB freed at its top stay there.
  // Setting either fixes both (glibc stops adjusting them).
  KJ_ASSERT(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
  KJ_ASSERT(mallopt(M_TRIM_THRESHOLD, 16 << 20) == 1);
}

}  // namespace tls
}  // namespace runner

#include "tls/tls-config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <string.h>

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
  if (requireSignedByCa) checkSignedByCa(files, certs, ca.first(), role);
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
}

kj::Promise<kj::AuthenticatedStream> ServerTls::wrapServer(kj::AuthenticatedStream stream) {
  auto peer = stream.peerIdentity->toString();
  auto timeout = handshakeTimeout;
  return kj::evalNow([&]() { return context->wrapServer(kj::mv(stream)); })
      .catch_([peer = kj::mv(peer),
               timeout](kj::Exception&& exception) -> kj::Promise<kj::AuthenticatedStream> {
        auto reason = exception.getType() == kj::Exception::Type::OVERLOADED
                          ? kj::str("no handshake within ", timeout)
                          : handshakeFailureReason(exception);
        return kj::Exception(exception.getType(), __FILE__, __LINE__,
                             kj::str("TLS handshake with ", peer, " failed: ", reason));
      });
}

kj::String ServerTls::peerCommonName(kj::PeerIdentity& identity) {
  KJ_IF_MAYBE (tlsIdentity, kj::dynamicDowncastIfAvailable<kj::TlsPeerIdentity>(identity)) {
    if (!tlsIdentity->hasCertificate()) {
      KJ_FAIL_REQUIRE(kj::str("peer ", tlsIdentity->getNetworkIdentity().toString(),
                              " presented no client certificate"));
    }
    kj::Maybe<kj::String> name;
    KJ_IF_MAYBE (exception,
                 kj::runCatchingExceptions([&]() { name = tlsIdentity->getCommonName(); })) {
      KJ_FAIL_REQUIRE(kj::str("client certificate of ",
                              tlsIdentity->getNetworkIdentity().toString(), " has no common name"));
    }
    auto result = KJ_ASSERT_NONNULL(kj::mv(name));
    if (result.size() == 0) {
      KJ_FAIL_REQUIRE(kj::str("client certificate of ",
                              tlsIdentity->getNetworkIdentity().toString(),
                              " has an empty common name"));
    }
    return result;
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
        return context->wrapClient(kj::mv(stream), name);
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

}  // namespace tls
}  // namespace runner

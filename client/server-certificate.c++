#include "client/server-certificate.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <kj/debug.h>
#include <kj/vector.h>

namespace runner {
namespace client {

namespace {

// A connected TCP socket to HOST:PORT (or [V6]:PORT), with 3 s send and receive timeouts.
int connectBriefly(kj::StringPtr server) {
  KJ_IF_MAYBE (colon, server.findLast(':')) {
    auto host = kj::str(server.slice(0, *colon));
    if (host.startsWith("[") && host.endsWith("]")) {
      host = kj::str(host.slice(1, host.size() - 1));
    }
    auto port = kj::str(server.slice(*colon + 1));
    struct addrinfo hints = {};
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* found = nullptr;
    if (getaddrinfo(host.cStr(), port.cStr(), &hints, &found) != 0) return -1;
    KJ_DEFER(freeaddrinfo(found));
    for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
      int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      struct timeval timeout = {3, 0};
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
      close(fd);
    }
  }
  return -1;
}

// "Jan  2 03:04:05 2027 GMT", as OpenSSL prints a certificate's time.
kj::String timeText(const ASN1_TIME* time) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return kj::str("?");
  KJ_DEFER(BIO_free(bio));
  ASN1_TIME_print(bio, time);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return kj::heapString(data, size);
}

// The DNS names and IP addresses the certificate names, comma-separated.
kj::String namesIn(X509* cert) {
  kj::Vector<kj::String> names;
  auto* alt =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (alt != nullptr) {
    KJ_DEFER(GENERAL_NAMES_free(alt));
    for (int i = 0; i < sk_GENERAL_NAME_num(alt); i++) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(alt, i);
      if (name->type == GEN_DNS) {
        names.add(
            kj::heapString(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                           ASN1_STRING_length(name->d.dNSName)));
      } else if (name->type == GEN_IPADD) {
        char text[INET6_ADDRSTRLEN] = {};
        int length = ASN1_STRING_length(name->d.iPAddress);
        const unsigned char* bytes = ASN1_STRING_get0_data(name->d.iPAddress);
        if (inet_ntop(length == 4 ? AF_INET : AF_INET6, bytes, text, sizeof(text)) != nullptr) {
          names.add(kj::str(text));
        }
      }
    }
  }
  if (names.size() == 0) return kj::str("no names");
  return kj::strArray(names, ", ");
}

}  // namespace

kj::Maybe<kj::String> diagnoseServerCertificate(kj::StringPtr server, kj::StringPtr serverName,
                                                kj::StringPtr caFile, kj::StringPtr certFile,
                                                kj::StringPtr keyFile) {
  int fd = connectBriefly(server);
  if (fd < 0) return nullptr;
  KJ_DEFER(close(fd));
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  if (context == nullptr) return nullptr;
  KJ_DEFER(SSL_CTX_free(context));
  SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION);
  SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nullptr);
  // The client's own credentials, so that the server completes the handshake it asks for.
  SSL_CTX_use_certificate_chain_file(context, certFile.cStr());
  SSL_CTX_use_PrivateKey_file(context, keyFile.cStr(), SSL_FILETYPE_PEM);
  SSL* ssl = SSL_new(context);
  if (ssl == nullptr) return nullptr;
  KJ_DEFER(SSL_free(ssl));
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, serverName.cStr());
  if (SSL_connect(ssl) != 1) return nullptr;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return nullptr;
  KJ_DEFER(X509_free(cert));

  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return nullptr;
  KJ_DEFER(X509_STORE_free(store));
  if (X509_STORE_load_file(store, caFile.cStr()) != 1) return nullptr;
  X509_STORE_CTX* verify = X509_STORE_CTX_new();
  if (verify == nullptr) return nullptr;
  KJ_DEFER(X509_STORE_CTX_free(verify));
  if (X509_STORE_CTX_init(verify, store, cert, SSL_get_peer_cert_chain(ssl)) != 1) return nullptr;
  if (X509_verify_cert(verify) != 1) {
    switch (X509_STORE_CTX_get_error(verify)) {
      case X509_V_ERR_CERT_HAS_EXPIRED:
        return kj::str("the server's certificate expired on ", timeText(X509_get0_notAfter(cert)),
                       ": the server needs a new one");
      case X509_V_ERR_CERT_NOT_YET_VALID:
        return kj::str("the server's certificate is not valid until ",
                       timeText(X509_get0_notBefore(cert)), ": check the clocks of both hosts");
      default:
        return kj::str("the server's certificate is not signed by the CA in ", caFile,
                       " (check --ca: it must be the CA that signed the server's certificate)");
    }
  }
  bool isAddress = false;
  {
    unsigned char bytes[16];
    isAddress = inet_pton(AF_INET, serverName.cStr(), bytes) == 1 ||
                inet_pton(AF_INET6, serverName.cStr(), bytes) == 1;
  }
  int matches = isAddress ? X509_check_ip_asc(cert, serverName.cStr(), 0)
                          : X509_check_host(cert, serverName.cStr(), serverName.size(), 0, nullptr);
  if (matches != 1) {
    return kj::str("the name ", serverName, " is not in the server's certificate (it names ",
                   namesIn(cert), "; use one of those in --server or --server-name)");
  }
  return nullptr;
}

}  // namespace client
}  // namespace runner

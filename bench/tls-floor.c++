// The floor under P3 and P4: how fast this machine moves bytes through TLS 1.3 over loopback
// when nothing else is done with them. A writer process SSL_write()s a buffer in 256 KiB calls
// to a reader process that SSL_read()s and drops them, with plain OpenSSL and blocking sockets:
// no file, no RPC, no event loop. Both ends buffer the socket in 256 KiB (a buffering BIO under
// the writer, read-ahead under the reader), so that records do not each cost a system call.
// Whatever runner adds comes on top of this; a target beyond it cannot be met by any TLS server
// on this machine.

#include <arpa/inet.h>
#include <kj/debug.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/benchmarks.h"

namespace runner {
namespace bench {

namespace {

constexpr size_t IO_BYTES = 256 * 1024;

[[noreturn]] void failSsl(const char* what) {
  char text[256];
  ERR_error_string_n(ERR_get_error(), text, sizeof(text));
  KJ_FAIL_REQUIRE(what, text);
}

// A throwaway P-256 key and self-signed certificate: the reader does not verify it, the
// handshake is not what is measured.
struct Identity {
  EVP_PKEY* key;
  X509* cert;

  Identity() {
    key = EVP_EC_gen("P-256");
    if (key == nullptr) failSsl("EVP_EC_gen");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("tls-floor"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    if (X509_sign(cert, key, EVP_sha256()) == 0) failSsl("X509_sign");
  }
  ~Identity() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  KJ_DISALLOW_COPY(Identity);
};

SSL_CTX* newContext(bool server, kj::StringPtr suite) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) failSsl("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_set_ciphersuites(ctx, suite.cStr()) != 1) failSsl("SSL_CTX_set_ciphersuites");
  return ctx;
}

// Reads until `total` bytes have arrived; the reader's process body.
void readAll(int fd, kj::StringPtr suite, uint64_t total) {
  SSL_CTX* ctx = newContext(false, suite);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, IO_BYTES);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) failSsl("SSL_connect");
  auto buffer = kj::heapArray<kj::byte>(IO_BYTES);
  uint64_t received = 0;
  while (received < total) {
    int n = SSL_read(ssl, buffer.begin(), buffer.size());
    if (n <= 0) failSsl("SSL_read");
    received += n;
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}

// Moves `total` bytes with `suite`; returns MB/s, timed from the first write until the reader
// has read everything and exited.
double transfer(const Identity& identity, kj::StringPtr suite, uint64_t total) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_REQUIRE(listener >= 0);
  KJ_DEFER(close(listener));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  KJ_SYSCALL(listen(listener, 1));
  socklen_t length = sizeof(address);
  KJ_SYSCALL(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length));

  pid_t reader;
  KJ_SYSCALL(reader = fork());
  if (reader == 0) {
    int status = 0;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                   KJ_SYSCALL(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
                   readAll(fd, suite, total);
                 })) {
      fprintf(stderr, "tls-floor reader: %s\n", e->getDescription().cStr());
      status = 1;
    }
    _exit(status);
  }

  int fd;
  KJ_SYSCALL(fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  KJ_DEFER(close(fd));
  SSL_CTX* ctx = newContext(true, suite);
  KJ_DEFER(SSL_CTX_free(ctx));
  if (SSL_CTX_use_certificate(ctx, identity.cert) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, identity.key) != 1) {
    failSsl("SSL_CTX_use_certificate");
  }
  SSL* ssl = SSL_new(ctx);
  KJ_DEFER(SSL_free(ssl));
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) failSsl("SSL_accept");
  // From here on, records gather in a buffer and go out 256 KiB at a time.
  BIO* buffered = BIO_new(BIO_f_buffer());
  BIO_set_write_buffer_size(buffered, IO_BYTES);
  BIO_push(buffered, SSL_get_wbio(ssl));
  BIO_up_ref(SSL_get_rbio(ssl));
  SSL_set_bio(ssl, SSL_get_rbio(ssl), buffered);
  KJ_REQUIRE(kj::StringPtr(SSL_get_cipher_name(ssl)) == suite, SSL_get_cipher_name(ssl));

  auto buffer = kj::heapArray<kj::byte>(IO_BYTES);
  memset(buffer.begin(), 0, buffer.size());
  double begin = now();
  uint64_t sent = 0;
  while (sent < total) {
    int n = SSL_write(ssl, buffer.begin(), kj::min<uint64_t>(buffer.size(), total - sent));
    if (n <= 0) failSsl("SSL_write");
    sent += n;
  }
  if (BIO_flush(SSL_get_wbio(ssl)) != 1) failSsl("BIO_flush");
  int status;
  KJ_SYSCALL(waitpid(reader, &status, 0));
  double elapsed = now() - begin;
  KJ_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the reader failed", status);
  return total / elapsed / 1e6;
}

}  // namespace

int tlsFloor(const Options& options) {
  uint64_t total = options.getNumber("bytes", uint64_t(1) << 30);
  auto runs = options.getNumber("runs", 3);
  Identity identity;
  JsonObject out;
  out.add("bytes", total);
  for (auto suite : {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"}) {
    Samples rates;
    for (uint64_t i = 0; i < runs; ++i) rates.add(transfer(identity, suite, total));
    // What the machine can do: the best run.
    out.add(kj::str(suite, "_mb_per_s"), rates.percentile(100));
  }
  printf("%s\n", out.toString().cStr());
  return 0;
}

}  // namespace bench
}  // namespace runner

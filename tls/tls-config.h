#pragma once
// TLS setup of both ends: ServerTls for runnerd, ClientTls for runctl.
//
// Both speak TLS 1.3 only (OpenSSL's default suites), authenticate each other with certificates
// from one CA, and trust nothing else (never the system store). Both read and check their files
// when constructed, so that a misconfiguration is one clear line at startup rather than a failed
// handshake later.

#include <kj/async-io.h>
#include <kj/compat/tls.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/timer.h>

namespace runner {
namespace tls {

// The PEM files one end needs: its own certificate and private key, and the CA it trusts.
struct TlsFiles {
  kj::StringPtr cert;
  kj::StringPtr key;
  kj::StringPtr ca;
  // runnerd's side only, optional: the CA's certificate revocation lists (PEM).
  kj::StringPtr crl = nullptr;
};

// kj-tls 0.9.2 has no TlsVersion::TLS_1_3, but it turns every version below `minVersion` into an
// SSL_OP_NO_* flag: the value one above TLS_1_2 sets SSL_OP_NO_TLSv1_2 (and the older ones) and
// leaves only TLS 1.3.
constexpr kj::TlsVersion TLS_1_3_ONLY =
    static_cast<kj::TlsVersion>(static_cast<int>(kj::TlsVersion::TLS_1_2) + 1);

constexpr kj::Duration DEFAULT_HANDSHAKE_TIMEOUT = 10 * kj::SECONDS;

// runnerd's side: requires a client certificate signed by the CA that names exactly one user (see
// client-name.h), and gives up on a handshake that has not completed within the handshake
// timeout. Sends no session tickets: every connection is a full handshake.
class ServerTls {
 public:
  // Reads and checks the files. Throws one line naming the problem when a file cannot be read,
  // is not a PEM certificate or key, when the key does not belong to the certificate, or when the
  // certificate is not a server certificate signed by the CA (or has expired). With `files.crl`,
  // every client certificate is also checked against the CA's revocation lists in it (each must
  // be signed by the CA and not past its next update: throws otherwise); a revoked client is
  // refused in the handshake ("client certificate is revoked").
  ServerTls(const TlsFiles& files, kj::Timer& timer,
            kj::Duration handshakeTimeout = DEFAULT_HANDSHAKE_TIMEOUT);
  KJ_DISALLOW_COPY(ServerTls);

  // Runs the server side of the handshake on a freshly accepted connection (runnerd accepts plain
  // TCP and calls this per connection). Resolves to the TLS stream, whose peerIdentity is a
  // kj::TlsPeerIdentity holding the verified client certificate. On failure rejects with
  // "TLS handshake with PEER failed: REASON", keeping the exception's type: DISCONNECTED when the
  // peer went away, OVERLOADED when it timed out, FAILED when the peer was refused. A client
  // certificate that names no user is refused here, with a "bad certificate" alert to the client
  // and REASON saying why ("client certificate has more than one common name").
  kj::Promise<kj::AuthenticatedStream> wrapServer(kj::AuthenticatedStream stream);

  // The user behind a connection from wrapServer(): the client certificate's subject common name.
  // Throws when `identity` is not a TLS identity, or when its certificate names no user (see
  // clientNameOf() in client-name.h: the message shows the names escaped, never raw).
  static kj::String peerCommonName(kj::PeerIdentity& identity);

  kj::Duration getHandshakeTimeout() const { return handshakeTimeout; }

  // What was loaded, for the log: the server certificate's subject, serial number and end of
  // validity, the CA's subject, and how many certificates the revocation lists name (nullptr
  // without --tls-crl).
  struct Summary {
    kj::String certificate;
    kj::String ca;
    kj::Maybe<size_t> revoked;
  };
  const Summary& summary() const { return loaded; }

 private:
  kj::Duration handshakeTimeout;
  Summary loaded;
  kj::Own<kj::TlsContext> context;
};

// Why ServerTls::wrapServer() refused a handshake, as one of a small fixed set (a metric's label:
// never the peer's own text). NO_CERTIFICATE: the client presented none; BAD_CERTIFICATE: its
// certificate is not from the CA, has expired, or is not a client certificate; BAD_NAME: it names
// no single user (client-name.h); PROTOCOL: not TLS 1.3 (an older TLS, plain HTTP, garbage);
// DISCONNECTED: the peer went away during the handshake; SILENT: it closed the connection without
// sending a byte (a TCP probe that connects and closes).
enum class HandshakeRefusal : uint8_t {
  TIMEOUT,
  DISCONNECTED,
  PROTOCOL,
  NO_CERTIFICATE,
  BAD_CERTIFICATE,
  REVOKED,
  BAD_NAME,
  CRL_EXPIRED,
  OTHER,
  SILENT,
};
constexpr size_t HANDSHAKE_REFUSALS = 10;
// "timeout", "disconnected", "protocol", "no_certificate", ...
kj::StringPtr refusalName(HandshakeRefusal refusal);
// The reason wrapServer() gives (type DISCONNECTED) when the peer closed the connection without
// sending anything.
constexpr kj::StringPtr CLOSED_SILENT = "the peer closed the connection without sending anything"_kj;

// The kind of a failure of wrapServer().
HandshakeRefusal classifyRefusal(const kj::Exception& failure);

// runctl's side: presents the client certificate and accepts only a server whose certificate is
// signed by the CA and names the server it was asked for.
class ClientTls {
 public:
  // Whether construction insists that the client certificate is signed by the CA given for the
  // server. It is in runner's one-CA setup, and checking early turns a refused handshake into a
  // clear local error; SKIP exists for setups (and tests) where the server trusts another CA.
  enum class CertCheck { SIGNED_BY_CA, SKIP };

  // Reads and checks the files like ServerTls (certificate and key parse and match; with
  // SIGNED_BY_CA, the certificate is a valid client certificate from the CA and names a user as
  // ServerTls demands, see client-name.h).
  explicit ClientTls(const TlsFiles& files, CertCheck check = CertCheck::SIGNED_BY_CA);
  KJ_DISALLOW_COPY(ClientTls);

  // Connects to `address` (HOST:PORT, or [IPV6]:PORT) and completes the handshake, verifying that
  // the server's certificate comes from the CA and names `serverName` — or, when `serverName` is
  // empty, the host part of `address`.
  //
  // In TLS 1.3 the client finishes its handshake before the server has judged the client
  // certificate: a refused client sees the server's alert on its first read, not here.
  // The ClientTls must outlive the returned promise (the stream does not need it).
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(kj::Network& network, kj::StringPtr address,
                                                  kj::StringPtr serverName = nullptr);

  // The host part of HOST:PORT or [HOST]:PORT. Throws a one-line error when there is no port.
  static kj::String hostOf(kj::StringPtr address);

  // The name to verify the server's certificate against: `name` itself, or for an IP address its
  // canonical text form (see certs/authority.h: runner's server certificates also carry each IP
  // address in that form as a DNS name, because kj-tls 0.9.2 only verifies DNS names).
  static kj::String expectedName(kj::StringPtr name);

 private:
  kj::Own<kj::TlsContext> context;
};

// Sets glibc's allocator up for what both ends of a connection do most: allocate and free
// messages of a little over 256 KiB (a chunk of output), one after the other. By default each
// such buffer is mmap()ed and unmapped, or, once glibc raises its threshold, taken from the top
// of the heap, which is then trimmed and grown again with brk() for every message; either way
// every chunk faults in and zeroes fresh pages. Called once, first thing in main().
void tuneAllocatorForStreaming();

}  // namespace tls
}  // namespace runner

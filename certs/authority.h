#pragma once
// The built-in certificate authority: makes the CA, server and client certificates that runnerd
// and runctl use for mutual TLS, in the spirit of `nomad tls ca create` / `nomad tls cert create`.
//
// Keys are ECDSA P-256, signatures SHA-256, serial numbers 128 random bits. Everything goes in
// and out as PEM text; credential-files.h puts it on disk.

#include <kj/array.h>
#include <kj/string.h>
#include <stdint.h>

namespace runner {
namespace certs {

// When a certificate is valid, in Unix seconds (inclusive on both ends).
struct Validity {
  int64_t notBefore;
  int64_t notAfter;

  // Valid from one minute ago (to absorb clock skew between hosts) for `days` days.
  // `days` must be between 1 and MAX_DAYS.
  static Validity forDays(unsigned days);
};

constexpr unsigned MAX_DAYS = 36500;
constexpr unsigned DEFAULT_CA_DAYS = 1825;
constexpr unsigned DEFAULT_CERT_DAYS = 365;
constexpr const char* DEFAULT_CA_NAME = "runner CA";

// A certificate and its private key, both PEM.
struct Credentials {
  kj::String certPem;
  kj::String keyPem;
};

// What a server certificate must name. At least one DNS name or IP address is required.
struct ServerNames {
  // Subject common name; when empty, the first DNS name (or else the first IP address).
  kj::StringPtr commonName;
  kj::ArrayPtr<const kj::StringPtr> dnsNames;
  kj::ArrayPtr<const kj::StringPtr> ipAddresses;
};

// A certificate authority that can issue server and client certificates. Holds the CA's
// certificate and key as PEM; both were checked to parse, to match, and to be a CA.
class Authority {
 public:
  // Makes a new self-signed CA: basicConstraints CA:TRUE (critical), keyUsage keyCertSign and
  // cRLSign (critical), a subject key identifier.
  static Authority create(kj::StringPtr commonName, Validity validity);

  // Loads an existing CA. Throws a one-line error when either PEM does not parse, when the key
  // does not belong to the certificate, or when the certificate is not a CA.
  static Authority load(kj::StringPtr certPem, kj::StringPtr keyPem);

  // A server certificate: extendedKeyUsage serverAuth, the given DNS and IP subject alternative
  // names, an authority key identifier pointing at this CA. Each IP address is also listed as a
  // DNS name in canonical text form ("::1", "127.0.0.1"): kj-tls 0.9.2 clients can only verify a
  // server by DNS name, and runner's client (tls/tls-config.h) looks for exactly that name.
  Credentials issueServer(const ServerNames& names, Validity validity) const;

  // A client certificate whose subject common name is `user` (runnerd's idea of who is calling):
  // extendedKeyUsage clientAuth. See checkUserName() for what a user name may be.
  Credentials issueClient(kj::StringPtr user, Validity validity) const;

  // What revoking a certificate made: the CA's new certificate revocation list.
  struct Revocation {
    // The new CRL (PEM): version 2, signed with SHA-256 by this CA, a CRL number one above the
    // one it replaces.
    kj::String crlPem;
    // The revoked certificate's serial number (hex) and subject common name (empty without one).
    kj::String serial;
    kj::String commonName;
    // Certificates the new CRL lists.
    size_t listed;
    // The certificate was listed already (the CRL is renewed all the same).
    bool alreadyListed;
  };

  // A new CRL listing what `currentCrlPem` (a CRL this CA signed, when there is one) listed, and
  // `revokedPem`, a certificate this CA issued, when given (without, the CRL is only renewed).
  // The CRL is valid (thisUpdate..nextUpdate) for `validity`; past its nextUpdate a server that
  // checks it refuses every client. Throws a one-line error when the certificate is not this
  // CA's, or the current CRL not one of its.
  Revocation issueCrl(kj::Maybe<kj::StringPtr> revokedPem, kj::Maybe<kj::StringPtr> currentCrlPem,
                      Validity validity) const;

  kj::StringPtr certPem() const { return credentials.certPem; }
  kj::StringPtr keyPem() const { return credentials.keyPem; }

 private:
  explicit Authority(Credentials credentials) : credentials(kj::mv(credentials)) {}

  Credentials credentials;
};

// Throws a one-line error ("WHAT must not be empty", ...) unless `name` can be a subject common
// name: 1 to 64 bytes, no control characters.
void checkCommonName(kj::StringPtr what, kj::StringPtr name);

// Throws a one-line error unless `user` can be a user name: 1 to 64 bytes, no '/', no control
// characters, not "." or "..". (It also becomes a file name: runner-certs writes USER.pem.)
void checkUserName(kj::StringPtr user);

// Throws a one-line error unless `name` is a DNS name: dot-separated labels of letters, digits and
// '-' (not at either end of a label), each 1 to 63 bytes, 253 bytes in all; the first label may
// be the wildcard "*".
void checkDnsName(kj::StringPtr name);

// Throws a one-line error unless `address` is an IPv4 or IPv6 address in text form.
void checkIpAddress(kj::StringPtr address);

}  // namespace certs
}  // namespace runner

#pragma once
// Client certificates with subjects that runner-certs refuses to make (several common names,
// control characters, bytes that are not UTF-8), issued by a test CA with OpenSSL's C API. For
// tests only: they show that runnerd refuses what a careless or hostile CA could still sign.

#include <kj/array.h>
#include <kj/common.h>
#include <kj/string.h>
#include <openssl/types.h>

#include "certs/authority.h"

namespace runner {
namespace tls {

// One attribute of a subject, stored exactly as given: the bytes are not checked against the
// ASN.1 string type (OpenSSL would refuse a UTF8String that is not UTF-8, say).
struct NameEntry {
  int nid;   // NID_commonName, NID_organizationName, ...
  int type;  // V_ASN1_UTF8STRING, V_ASN1_BMPSTRING, V_ASN1_BIT_STRING, ...
  kj::ArrayPtr<const char> value;
  // Whether this attribute joins the previous one in a multi-valued RDN (CN=admin+CN=bob) rather
  // than starting an RDN of its own (CN=admin,CN=bob).
  bool joinsPrevious = false;
};

// The bytes of a string literal without its terminating NUL, embedded NULs included.
template <size_t n>
kj::ArrayPtr<const char> bytes(const char (&literal)[n]) {
  return kj::arrayPtr(literal, n - 1);
}

// An X509 certificate in memory; frees it.
class Certificate {
 public:
  explicit Certificate(X509* cert) : cert(cert) {}
  Certificate(Certificate&& other) : cert(other.cert) { other.cert = nullptr; }
  ~Certificate() noexcept(false);
  KJ_DISALLOW_COPY(Certificate);

  X509* get() const { return cert; }

 private:
  X509* cert;
};

// A bare certificate with only `subject`: neither signed nor ever encoded, so that its subject may
// hold what OpenSSL cannot encode or parse (a UTF8String that is not UTF-8).
Certificate certificateWithSubject(kj::ArrayPtr<const NameEntry> subject);

// A client certificate (extendedKeyUsage clientAuth, valid for a day) whose subject is `subject`,
// issued and signed by `ca`, with a new key. The subject must be one OpenSSL can encode.
struct IssuedClient {
  Certificate cert;
  certs::Credentials pem;
};
IssuedClient issueClientWithSubject(const certs::Authority& ca,
                                    kj::ArrayPtr<const NameEntry> subject);

}  // namespace tls
}  // namespace runner

#include "certs/authority.h"

#include <arpa/inet.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <time.h>

namespace runner {
namespace certs {

namespace {

// Turns OpenSSL's error queue into one line (and empties the queue).
kj::String takeOpensslErrors() {
  kj::Vector<kj::String> reasons;
  while (unsigned long error = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(error);
    reasons.add(reason == nullptr ? kj::str("error ", error) : kj::str(reason));
  }
  if (reasons.empty()) return kj::str("unknown OpenSSL error");
  return kj::strArray(reasons, ": ");
}

// For OpenSSL calls that only fail when we misuse them or run out of memory.
#define RUNNER_OPENSSL_CHECK(call)                                                 \
  do {                                                                             \
    if (!(call)) KJ_FAIL_ASSERT(kj::str(#call, " failed: ", takeOpensslErrors())); \
  } while (false)

bool isIpAddress(kj::StringPtr text) {
  unsigned char buffer[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, text.cStr(), buffer) == 1 ||
         inet_pton(AF_INET6, text.cStr(), buffer) == 1;
}

// inet_ntop's form of a valid address: what runner's client expects to find as a DNS name.
kj::String canonicalIpAddress(kj::StringPtr address) {
  unsigned char buffer[sizeof(struct in6_addr)];
  char text[INET6_ADDRSTRLEN];
  int family = inet_pton(AF_INET, address.cStr(), buffer) == 1 ? AF_INET : AF_INET6;
  KJ_ASSERT(inet_pton(family, address.cStr(), buffer) == 1, address);
  KJ_ASSERT(inet_ntop(family, buffer, text, sizeof(text)) != nullptr, address);
  return kj::str(text);
}

bool isControl(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}

void checkValidity(const Validity& validity) {
  if (validity.notAfter <= validity.notBefore) {
    KJ_FAIL_REQUIRE(kj::str("validity ends (", validity.notAfter, ") before it begins (",
                            validity.notBefore, ")"));
  }
}

EVP_PKEY* newKey() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  RUNNER_OPENSSL_CHECK(key != nullptr);
  return key;
}

// Refuses to ask for a passphrase (OpenSSL's default would prompt on the terminal): runner's keys
// are not encrypted.
int noPassphrase(char*, int, int, void*) {
  return -1;
}

kj::String bioText(BIO* bio) {
  char* data;
  long size = BIO_get_mem_data(bio, &data);
  KJ_ASSERT(size >= 0);
  return kj::heapString(data, size);
}

kj::String certToPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  RUNNER_OPENSSL_CHECK(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  RUNNER_OPENSSL_CHECK(PEM_write_bio_X509(bio, cert));
  return bioText(bio);
}

kj::String keyToPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  RUNNER_OPENSSL_CHECK(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  RUNNER_OPENSSL_CHECK(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr));
  return bioText(bio);
}

X509* parseCert(kj::StringPtr what, kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  RUNNER_OPENSSL_CHECK(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  X509* cert = PEM_read_bio_X509(bio, nullptr, noPassphrase, nullptr);
  if (cert == nullptr) {
    KJ_FAIL_REQUIRE(kj::str(what, " is not a PEM certificate: ", takeOpensslErrors()));
  }
  return cert;
}

EVP_PKEY* parseKey(kj::StringPtr what, kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  RUNNER_OPENSSL_CHECK(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, noPassphrase, nullptr);
  if (key == nullptr) {
    KJ_FAIL_REQUIRE(kj::str(what, " is not an unencrypted PEM private key: ", takeOpensslErrors()));
  }
  return key;
}

void setRandomSerial(X509* cert) {
  unsigned char bytes[16];
  RUNNER_OPENSSL_CHECK(RAND_bytes(bytes, sizeof(bytes)) == 1);
  bytes[0] &= 0x7f;  // DER integers are signed: keep it positive,
  bytes[0] |= 0x40;  // and keep all 127 remaining bits significant (never zero, never short).
  BIGNUM* number = BN_bin2bn(bytes, sizeof(bytes), nullptr);
  RUNNER_OPENSSL_CHECK(number != nullptr);
  KJ_DEFER(BN_free(number));
  RUNNER_OPENSSL_CHECK(BN_to_ASN1_INTEGER(number, X509_get_serialNumber(cert)) != nullptr);
}

void setCommonName(X509_NAME* name, kj::StringPtr commonName) {
  RUNNER_OPENSSL_CHECK(X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(commonName.cStr()), -1, -1,
      0));
}

void addExtension(X509* cert, X509V3_CTX* context, int nid, kj::StringPtr value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, context, nid, value.cStr());
  if (extension == nullptr) {
    KJ_FAIL_ASSERT(kj::str("bad certificate extension ", OBJ_nid2sn(nid), "=", value, ": ",
                           takeOpensslErrors()));
  }
  KJ_DEFER(X509_EXTENSION_free(extension));
  RUNNER_OPENSSL_CHECK(X509_add_ext(cert, extension, -1));
}

// A new certificate for `subjectKey`, named `commonName`, valid during `validity`, not yet
// signed and without extensions. The issuer is the subject itself unless `issuer` is given.
X509* newCertificate(kj::StringPtr commonName, EVP_PKEY* subjectKey, const Validity& validity,
                     X509* issuer) {
  X509* cert = X509_new();
  RUNNER_OPENSSL_CHECK(cert != nullptr);
  KJ_ON_SCOPE_FAILURE(X509_free(cert));

  RUNNER_OPENSSL_CHECK(X509_set_version(cert, X509_VERSION_3));
  setRandomSerial(cert);
  setCommonName(X509_get_subject_name(cert), commonName);
  RUNNER_OPENSSL_CHECK(
      X509_set_issuer_name(cert, X509_get_subject_name(issuer == nullptr ? cert : issuer)));
  RUNNER_OPENSSL_CHECK(ASN1_TIME_set(X509_getm_notBefore(cert), validity.notBefore));
  RUNNER_OPENSSL_CHECK(ASN1_TIME_set(X509_getm_notAfter(cert), validity.notAfter));
  RUNNER_OPENSSL_CHECK(X509_set_pubkey(cert, subjectKey));
  return cert;
}

// What a leaf certificate is for, besides its names.
enum class Purpose { SERVER, CLIENT };

}  // namespace

Validity Validity::forDays(unsigned days) {
  if (days < 1 || days > MAX_DAYS) {
    KJ_FAIL_REQUIRE(kj::str("days must be between 1 and ", MAX_DAYS, ", not ", days));
  }
  int64_t now = time(nullptr);
  return {now - 60, now + int64_t(days) * 86400};
}

Authority Authority::create(kj::StringPtr commonName, Validity validity) {
  checkCommonName("CA name", commonName);
  checkValidity(validity);

  EVP_PKEY* key = newKey();
  KJ_DEFER(EVP_PKEY_free(key));
  X509* cert = newCertificate(commonName, key, validity, nullptr);
  KJ_DEFER(X509_free(cert));

  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  addExtension(cert, &context, NID_basic_constraints, "critical,CA:TRUE");
  addExtension(cert, &context, NID_key_usage, "critical,keyCertSign,cRLSign");
  addExtension(cert, &context, NID_subject_key_identifier, "hash");
  RUNNER_OPENSSL_CHECK(X509_sign(cert, key, EVP_sha256()) > 0);

  return Authority({certToPem(cert), keyToPem(key)});
}

Authority Authority::load(kj::StringPtr certPem, kj::StringPtr keyPem) {
  X509* cert = parseCert("CA certificate", certPem);
  KJ_DEFER(X509_free(cert));
  EVP_PKEY* key = parseKey("CA key", keyPem);
  KJ_DEFER(EVP_PKEY_free(key));

  if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    KJ_FAIL_REQUIRE("CA key does not belong to the CA certificate");
  }
  if (X509_check_ca(cert) != 1) {
    KJ_FAIL_REQUIRE("CA certificate is not a CA (basicConstraints CA:TRUE is missing)");
  }
  return Authority({kj::str(certPem), kj::str(keyPem)});
}

namespace {

Credentials issue(const Credentials& ca, kj::StringPtr commonName, Purpose purpose,
                  kj::StringPtr subjectAltNames, const Validity& validity) {
  checkValidity(validity);

  X509* caCert = parseCert("CA certificate", ca.certPem);
  KJ_DEFER(X509_free(caCert));
  EVP_PKEY* caKey = parseKey("CA key", ca.keyPem);
  KJ_DEFER(EVP_PKEY_free(caKey));

  EVP_PKEY* key = newKey();
  KJ_DEFER(EVP_PKEY_free(key));
  X509* cert = newCertificate(commonName, key, validity, caCert);
  KJ_DEFER(X509_free(cert));

  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, caCert, cert, nullptr, nullptr, 0);
  addExtension(cert, &context, NID_basic_constraints, "critical,CA:FALSE");
  addExtension(cert, &context, NID_key_usage, "critical,digitalSignature");
  addExtension(cert, &context, NID_ext_key_usage,
               purpose == Purpose::SERVER ? "serverAuth" : "clientAuth");
  addExtension(cert, &context, NID_subject_key_identifier, "hash");
  addExtension(cert, &context, NID_authority_key_identifier, "keyid:always");
  if (subjectAltNames.size() > 0) {
    addExtension(cert, &context, NID_subject_alt_name, subjectAltNames);
  }
  RUNNER_OPENSSL_CHECK(X509_sign(cert, caKey, EVP_sha256()) > 0);

  return {certToPem(cert), keyToPem(key)};
}

}  // namespace

Credentials Authority::issueServer(const ServerNames& names, Validity validity) const {
  if (names.dnsNames.size() == 0 && names.ipAddresses.size() == 0) {
    KJ_FAIL_REQUIRE("a server certificate needs at least one DNS name or IP address");
  }

  // Every name is checked first, so the list below cannot smuggle in another entry.
  kj::Vector<kj::String> altNames;
  for (auto name : names.dnsNames) {
    checkDnsName(name);
    altNames.add(kj::str("DNS:", name));
  }
  for (auto address : names.ipAddresses) {
    checkIpAddress(address);
    altNames.add(kj::str("IP:", address));
  }
  // kj-tls 0.9.2 verifies a server only by DNS name (X509_VERIFY_PARAM_set1_host), never by IP
  // address, so each address is also listed as a DNS name in canonical text form, which is what
  // runner's client verifies when it connects to an address. No real DNS name looks like an
  // address, so this lets nothing else through; other clients still check the IP entries.
  for (auto address : names.ipAddresses) {
    altNames.add(kj::str("DNS:", canonicalIpAddress(address)));
  }

  kj::StringPtr commonName = names.commonName;
  if (commonName.size() == 0) {
    commonName = names.dnsNames.size() > 0 ? names.dnsNames[0] : names.ipAddresses[0];
  }
  checkCommonName("server name", commonName);

  return issue(credentials, commonName, Purpose::SERVER, kj::strArray(altNames, ","), validity);
}

Credentials Authority::issueClient(kj::StringPtr user, Validity validity) const {
  checkUserName(user);
  return issue(credentials, user, Purpose::CLIENT, nullptr, validity);
}

void checkCommonName(kj::StringPtr what, kj::StringPtr name) {
  if (name.size() == 0) KJ_FAIL_REQUIRE(kj::str(what, " must not be empty"));
  if (name.size() > 64) KJ_FAIL_REQUIRE(kj::str(what, " is longer than 64 bytes: ", name));
  for (char c : name) {
    if (isControl(c)) KJ_FAIL_REQUIRE(kj::str(what, " must not contain control characters"));
  }
}

void checkUserName(kj::StringPtr user) {
  checkCommonName("user name", user);
  if (user.findFirst('/') != nullptr) {
    KJ_FAIL_REQUIRE(kj::str("user name must not contain '/': ", user));
  }
  if (user == "." || user == "..") {
    KJ_FAIL_REQUIRE(kj::str("user name must not be '", user, "'"));
  }
}

namespace {

X509_CRL* parseCrl(kj::StringPtr what, kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  RUNNER_OPENSSL_CHECK(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, noPassphrase, nullptr);
  if (crl == nullptr) {
    KJ_FAIL_REQUIRE(kj::str(what, " is not a PEM certificate revocation list: ",
                            takeOpensslErrors()));
  }
  return crl;
}

kj::String hexOf(const ASN1_INTEGER* number) {
  BIGNUM* big = ASN1_INTEGER_to_BN(number, nullptr);
  RUNNER_OPENSSL_CHECK(big != nullptr);
  KJ_DEFER(BN_free(big));
  char* hex = BN_bn2hex(big);
  RUNNER_OPENSSL_CHECK(hex != nullptr);
  KJ_DEFER(OPENSSL_free(hex));
  return kj::str(hex);
}

kj::String commonNameOf(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return kj::str();
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  return kj::heapString(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                        ASN1_STRING_length(data));
}

void setTime(int (*set)(X509_CRL*, const ASN1_TIME*), X509_CRL* crl, int64_t when) {
  ASN1_TIME* time = ASN1_TIME_set(nullptr, when);
  RUNNER_OPENSSL_CHECK(time != nullptr);
  KJ_DEFER(ASN1_TIME_free(time));
  RUNNER_OPENSSL_CHECK(set(crl, time) == 1);
}

}  // namespace

Authority::Revocation Authority::issueCrl(kj::Maybe<kj::StringPtr> revokedPem,
                                          kj::Maybe<kj::StringPtr> currentCrlPem,
                                          Validity validity) const {
  checkValidity(validity);
  X509* caCert = parseCert("CA certificate", credentials.certPem);
  KJ_DEFER(X509_free(caCert));
  EVP_PKEY* caKey = parseKey("CA key", credentials.keyPem);
  KJ_DEFER(EVP_PKEY_free(caKey));
  X509* cert = nullptr;
  KJ_DEFER(if (cert != nullptr) X509_free(cert));
  KJ_IF_MAYBE (pem, revokedPem) {
    cert = parseCert("the certificate to revoke", *pem);
    if (X509_check_issued(caCert, cert) != X509_V_OK || X509_verify(cert, caKey) != 1) {
      ERR_clear_error();
      KJ_FAIL_REQUIRE("the certificate to revoke was not issued by this CA");
    }
  }

  X509_CRL* crl = X509_CRL_new();
  RUNNER_OPENSSL_CHECK(crl != nullptr);
  KJ_DEFER(X509_CRL_free(crl));
  RUNNER_OPENSSL_CHECK(X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1);
  RUNNER_OPENSSL_CHECK(X509_CRL_set_issuer_name(crl, X509_get_subject_name(caCert)) == 1);
  setTime(X509_CRL_set1_lastUpdate, crl, validity.notBefore);
  setTime(X509_CRL_set1_nextUpdate, crl, validity.notAfter);

  long number = 1;
  bool alreadyListed = false;
  KJ_IF_MAYBE (pem, currentCrlPem) {
    X509_CRL* current = parseCrl("the CA's current CRL", *pem);
    KJ_DEFER(X509_CRL_free(current));
    if (X509_NAME_cmp(X509_CRL_get_issuer(current), X509_get_subject_name(caCert)) != 0 ||
        X509_CRL_verify(current, caKey) != 1) {
      ERR_clear_error();
      KJ_FAIL_REQUIRE("the current CRL was not signed by this CA");
    }
    STACK_OF(X509_REVOKED)* listed = X509_CRL_get_REVOKED(current);
    for (int i = 0; i < sk_X509_REVOKED_num(listed); i++) {
      X509_REVOKED* entry = sk_X509_REVOKED_value(listed, i);
      if (cert != nullptr && ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(entry),
                                              X509_get_serialNumber(cert)) == 0) {
        alreadyListed = true;
      }
      X509_REVOKED* copy = X509_REVOKED_dup(entry);
      RUNNER_OPENSSL_CHECK(copy != nullptr);
      RUNNER_OPENSSL_CHECK(X509_CRL_add0_revoked(crl, copy) == 1);
    }
    ASN1_INTEGER* previous =
        static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(current, NID_crl_number, nullptr, nullptr));
    if (previous != nullptr) {
      number = ASN1_INTEGER_get(previous) + 1;
      ASN1_INTEGER_free(previous);
    }
  }
  if (cert != nullptr && !alreadyListed) {
    X509_REVOKED* entry = X509_REVOKED_new();
    RUNNER_OPENSSL_CHECK(entry != nullptr);
    RUNNER_OPENSSL_CHECK(X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(cert)) == 1);
    ASN1_TIME* now = ASN1_TIME_set(nullptr, time(nullptr));
    RUNNER_OPENSSL_CHECK(now != nullptr);
    KJ_DEFER(ASN1_TIME_free(now));
    RUNNER_OPENSSL_CHECK(X509_REVOKED_set_revocationDate(entry, now) == 1);
    RUNNER_OPENSSL_CHECK(X509_CRL_add0_revoked(crl, entry) == 1);
  }
  ASN1_INTEGER* crlNumber = ASN1_INTEGER_new();
  RUNNER_OPENSSL_CHECK(crlNumber != nullptr);
  KJ_DEFER(ASN1_INTEGER_free(crlNumber));
  RUNNER_OPENSSL_CHECK(ASN1_INTEGER_set(crlNumber, number) == 1);
  RUNNER_OPENSSL_CHECK(X509_CRL_add1_ext_i2d(crl, NID_crl_number, crlNumber, 0, 0) == 1);
  RUNNER_OPENSSL_CHECK(X509_CRL_sort(crl) == 1);
  RUNNER_OPENSSL_CHECK(X509_CRL_sign(crl, caKey, EVP_sha256()) > 0);

  BIO* bio = BIO_new(BIO_s_mem());
  RUNNER_OPENSSL_CHECK(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  RUNNER_OPENSSL_CHECK(PEM_write_bio_X509_CRL(bio, crl) == 1);
  return Revocation{bioText(bio),
                    cert == nullptr ? kj::str() : hexOf(X509_get_serialNumber(cert)),
                    cert == nullptr ? kj::str() : commonNameOf(cert),
                    size_t(kj::max(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 0)),
                    alreadyListed};
}

void checkDnsName(kj::StringPtr name) {
  auto fail = [&](kj::StringPtr why) {
    KJ_FAIL_REQUIRE(kj::str("not a valid DNS name (", why, "): ", name));
  };
  if (name.size() == 0) fail("empty");
  if (name.size() > 253) fail("longer than 253 bytes");
  if (isIpAddress(name)) fail("it is an IP address");

  size_t labelStart = 0;
  for (size_t i = 0; i <= name.size(); i++) {
    if (i < name.size() && name[i] != '.') continue;
    auto label = name.slice(labelStart, i);
    if (label.size() == 0) fail("empty label");
    if (label.size() > 63) fail("label longer than 63 bytes");
    bool wildcard = labelStart == 0 && label.size() == 1 && label[0] == '*' && i < name.size();
    if (!wildcard) {
      for (char c : label) {
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok) fail("only letters, digits, '-' and '.' are allowed");
      }
      if (label[0] == '-' || label[label.size() - 1] == '-') {
        fail("a label must not begin or end with '-'");
      }
    }
    labelStart = i + 1;
  }
}

void checkIpAddress(kj::StringPtr address) {
  if (!isIpAddress(address)) KJ_FAIL_REQUIRE(kj::str("not a valid IP address: ", address));
}

}  // namespace certs
}  // namespace runner

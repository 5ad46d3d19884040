#include "tls/test-certificates.h"

#include <kj/debug.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <time.h>

namespace runner {
namespace tls {

namespace {

kj::String bioText(BIO* bio) {
  char* data;
  long size = BIO_get_mem_data(bio, &data);
  KJ_ASSERT(size >= 0);
  return kj::heapString(data, size);
}

X509* parseCert(kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  KJ_ASSERT(cert != nullptr);
  return cert;
}

EVP_PKEY* parseKey(kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  KJ_ASSERT(key != nullptr);
  return key;
}

void addExtension(X509* cert, X509V3_CTX* context, int nid, const char* value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, context, nid, value);
  KJ_ASSERT(extension != nullptr, value);
  KJ_DEFER(X509_EXTENSION_free(extension));
  KJ_ASSERT(X509_add_ext(cert, extension, -1) == 1);
}

}  // namespace

Certificate::~Certificate() noexcept(false) {
  X509_free(cert);
}

Certificate certificateWithSubject(kj::ArrayPtr<const NameEntry> subject) {
  Certificate cert(X509_new());
  KJ_ASSERT(cert.get() != nullptr);
  X509_NAME* name = X509_get_subject_name(cert.get());
  for (auto& entry : subject) {
    KJ_ASSERT(
        X509_NAME_add_entry_by_NID(name, entry.nid, entry.type,
                                   reinterpret_cast<const unsigned char*>(entry.value.begin()),
                                   entry.value.size(), -1, entry.joinsPrevious ? -1 : 0) == 1);
  }
  return cert;
}

IssuedClient issueClientWithSubject(const certs::Authority& ca,
                                    kj::ArrayPtr<const NameEntry> subject) {
  X509* caCert = parseCert(ca.certPem());
  KJ_DEFER(X509_free(caCert));
  EVP_PKEY* caKey = parseKey(ca.keyPem());
  KJ_DEFER(EVP_PKEY_free(caKey));
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  KJ_ASSERT(key != nullptr);
  KJ_DEFER(EVP_PKEY_free(key));

  auto cert = certificateWithSubject(subject);
  X509* x = cert.get();
  KJ_ASSERT(X509_set_version(x, X509_VERSION_3) == 1);
  unsigned char serial[16];
  KJ_ASSERT(RAND_bytes(serial, sizeof(serial)) == 1);
  serial[0] = (serial[0] & 0x7f) | 0x40;
  BIGNUM* number = BN_bin2bn(serial, sizeof(serial), nullptr);
  KJ_ASSERT(number != nullptr);
  KJ_DEFER(BN_free(number));
  KJ_ASSERT(BN_to_ASN1_INTEGER(number, X509_get_serialNumber(x)) != nullptr);

  KJ_ASSERT(X509_set_issuer_name(x, X509_get_subject_name(caCert)) == 1);
  time_t now = time(nullptr);
  KJ_ASSERT(ASN1_TIME_set(X509_getm_notBefore(x), now - 60) != nullptr);
  KJ_ASSERT(ASN1_TIME_set(X509_getm_notAfter(x), now + 86400) != nullptr);
  KJ_ASSERT(X509_set_pubkey(x, key) == 1);

  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, caCert, x, nullptr, nullptr, 0);
  addExtension(x, &context, NID_basic_constraints, "critical,CA:FALSE");
  addExtension(x, &context, NID_key_usage, "critical,digitalSignature");
  addExtension(x, &context, NID_ext_key_usage, "clientAuth");
  addExtension(x, &context, NID_authority_key_identifier, "keyid:always");
  KJ_ASSERT(X509_sign(x, caKey, EVP_sha256()) > 0, "OpenSSL cannot encode this subject");

  BIO* certBio = BIO_new(BIO_s_mem());
  KJ_ASSERT(certBio != nullptr);
  KJ_DEFER(BIO_free(certBio));
  KJ_ASSERT(PEM_write_bio_X509(certBio, x) == 1);
  BIO* keyBio = BIO_new(BIO_s_mem());
  KJ_ASSERT(keyBio != nullptr);
  KJ_DEFER(BIO_free(keyBio));
  KJ_ASSERT(PEM_write_bio_PrivateKey(keyBio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);

  return {kj::mv(cert), {bioText(certBio), bioText(keyBio)}};
}

}  // namespace tls
}  // namespace runner

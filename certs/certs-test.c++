// The certificate library: what it issues is checked with OpenSSL itself, and the files it writes
// are checked on a real disk in a temporary directory.

#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "certs/authority.h"
#include "certs/credential-files.h"

namespace runner {
namespace certs {
namespace {

// A directory that exists for one test.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    auto pattern = kj::str(base == nullptr ? "/tmp" : base, "/certs-test.XXXXXX");
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

struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
using OwnX509 = std::unique_ptr<X509, X509Deleter>;

OwnX509 parse(kj::StringPtr pem) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  KJ_DEFER(BIO_free(bio));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  KJ_ASSERT(cert != nullptr);
  return OwnX509(cert);
}

kj::String commonName(X509* cert) {
  char buffer[256];
  int size = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buffer,
                                       sizeof(buffer));
  KJ_ASSERT(size >= 0);
  return kj::heapString(buffer, size);
}

// X509_verify_cert's verdict on `leaf` against a store holding only `ca`, for `purpose`.
int verify(X509* leaf, X509* ca, int purpose) {
  X509_STORE* store = X509_STORE_new();
  KJ_DEFER(X509_STORE_free(store));
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* context = X509_STORE_CTX_new();
  KJ_DEFER(X509_STORE_CTX_free(context));
  X509_STORE_CTX_init(context, store, leaf, nullptr);
  X509_STORE_CTX_set_purpose(context, purpose);
  if (X509_verify_cert(context) == 1) return X509_V_OK;
  return X509_STORE_CTX_get_error(context);
}

mode_t modeOf(kj::StringPtr path) {
  struct stat info;
  KJ_SYSCALL(stat(path.cStr(), &info), path);
  return info.st_mode & 07777;
}

// The description of the exception `body` throws, or "(nothing thrown)".
template <typename Body>
kj::String errorOf(Body&& body) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::fwd<Body>(body))) {
    return kj::str(exception->getDescription());
  }
  return kj::str("(nothing thrown)");
}

const Authority& testCa() {
  static const Authority ca = Authority::create(DEFAULT_CA_NAME, Validity::forDays(1));
  return ca;
}

Credentials localServer() {
  kj::StringPtr dns[] = {"localhost", "runner.example.com"};
  kj::StringPtr ips[] = {"127.0.0.1", "::1"};
  return testCa().issueServer({nullptr, dns, ips}, Validity::forDays(1));
}

TEST(Authority, CaIsACriticalCaWithCertSignKeyUsage) {
  auto ca = parse(testCa().certPem());
  EXPECT_EQ(commonName(ca.get()), "runner CA");
  EXPECT_EQ(X509_check_ca(ca.get()), 1);

  int critical = -1;
  auto* constraints = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(ca.get(), NID_basic_constraints, &critical, nullptr));
  ASSERT_NE(constraints, nullptr);
  EXPECT_TRUE(constraints->ca);
  EXPECT_EQ(critical, 1);
  BASIC_CONSTRAINTS_free(constraints);

  EXPECT_EQ(X509_get_key_usage(ca.get()), uint32_t(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get0_subject_key_id(ca.get()), nullptr);
  EXPECT_EQ(X509_get_signature_nid(ca.get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(ca.get())), 256);
  EXPECT_TRUE(EVP_PKEY_is_a(X509_get0_pubkey(ca.get()), "EC"));
}

TEST(Authority, ServerCertVerifiesAgainstTheCaAndCarriesTheNames) {
  auto ca = parse(testCa().certPem());
  auto server = localServer();
  auto cert = parse(server.certPem);

  EXPECT_EQ(verify(cert.get(), ca.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_NE(verify(cert.get(), ca.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  EXPECT_EQ(commonName(cert.get()), "localhost");

  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "runner.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "other.example.com", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "10.0.0.1", 0), 0);
  // The addresses are mirrored as DNS names for kj-tls clients (see issueServer()).
  EXPECT_EQ(X509_check_host(cert.get(), "127.0.0.1", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "::1", 0, 0, nullptr), 1);

  EXPECT_TRUE(X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER);
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  auto* authorityKeyId = X509_get0_authority_key_id(cert.get());
  ASSERT_NE(authorityKeyId, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(authorityKeyId, X509_get0_subject_key_id(ca.get())), 0);
}

TEST(Authority, SerialsAreRandom128BitNumbers) {
  auto first = parse(localServer().certPem);
  auto second = parse(localServer().certPem);
  auto* a = X509_get0_serialNumber(first.get());
  auto* b = X509_get0_serialNumber(second.get());
  EXPECT_NE(ASN1_INTEGER_cmp(a, b), 0);
  EXPECT_EQ(ASN1_STRING_length(a), 16);
  EXPECT_EQ(ASN1_STRING_length(b), 16);
}

TEST(Authority, ClientCertNamesTheUserAndIsForClientsOnly) {
  auto ca = parse(testCa().certPem());
  auto cert = parse(testCa().issueClient("alice", Validity::forDays(1)).certPem);
  EXPECT_EQ(commonName(cert.get()), "alice");
  EXPECT_EQ(verify(cert.get(), ca.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_NE(verify(cert.get(), ca.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_TRUE(X509_get_extended_key_usage(cert.get()) & XKU_SSL_CLIENT);
}

TEST(Authority, ExplicitValidityMakesAnExpiredCert) {
  int64_t now = time(nullptr);
  auto ca = parse(testCa().certPem());
  auto cert = parse(testCa().issueClient("late", {now - 2 * 86400, now - 86400}).certPem);
  EXPECT_EQ(verify(cert.get(), ca.get(), X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_HAS_EXPIRED);
  EXPECT_EQ(errorOf([&]() {
              testCa().issueClient("x", {now, now - 1});
            }),
            kj::str("validity ends (", now - 1, ") before it begins (", now, ")"));
}

TEST(Authority, BadUserNamesAreRejected) {
  auto issue = [](kj::StringPtr user) {
    return errorOf([&]() { testCa().issueClient(user, Validity::forDays(1)); });
  };
  EXPECT_EQ(issue(""), "user name must not be empty");
  EXPECT_EQ(issue("a/b"), "user name must not contain '/': a/b");
  EXPECT_EQ(issue("bad\nname"), "user name must not contain control characters");
  EXPECT_EQ(issue("tab\there"), "user name must not contain control characters");
  EXPECT_EQ(issue("del\x7f"), "user name must not contain control characters");
  EXPECT_EQ(issue(".."), "user name must not be '..'");
  EXPECT_EQ(issue(kj::str(kj::repeat('a', 65))),
            kj::str("user name is longer than 64 bytes: ", kj::repeat('a', 65)));
  EXPECT_EQ(issue("alice"), "(nothing thrown)");
  EXPECT_EQ(issue("bob.smith@example"), "(nothing thrown)");
}

TEST(Authority, BadServerNamesAreRejected) {
  auto issue = [](kj::StringPtr dns, kj::StringPtr ip) {
    return errorOf([&]() {
      ServerNames names;
      names.dnsNames = dns == nullptr ? nullptr : kj::arrayPtr(&dns, 1);
      names.ipAddresses = ip == nullptr ? nullptr : kj::arrayPtr(&ip, 1);
      testCa().issueServer(names, Validity::forDays(1));
    });
  };
  EXPECT_EQ(issue("bad_name", nullptr),
            "not a valid DNS name (only letters, digits, '-' and '.' are allowed): bad_name");
  EXPECT_EQ(issue("-x.example", nullptr),
            "not a valid DNS name (a label must not begin or end with '-'): -x.example");
  EXPECT_EQ(issue("a..b", nullptr), "not a valid DNS name (empty label): a..b");
  EXPECT_EQ(issue("host,IP:1.2.3.4", nullptr),
            "not a valid DNS name (only letters, digits, '-' and '.' are allowed): "
            "host,IP:1.2.3.4");
  EXPECT_EQ(issue("10.0.0.1", nullptr), "not a valid DNS name (it is an IP address): 10.0.0.1");
  EXPECT_EQ(issue(nullptr, "1.2.3"), "not a valid IP address: 1.2.3");
  EXPECT_EQ(issue(nullptr, "localhost"), "not a valid IP address: localhost");
  EXPECT_EQ(issue(nullptr, nullptr),
            "a server certificate needs at least one DNS name or IP address");
  EXPECT_EQ(issue("*.example.com", "fe80::1"), "(nothing thrown)");
}

TEST(Authority, LoadChecksThatTheKeyMatchesAndTheCertIsACa) {
  auto other = Authority::create("other CA", Validity::forDays(1));
  auto server = localServer();
  EXPECT_EQ(errorOf([&]() { Authority::load(testCa().certPem(), other.keyPem()); }),
            "CA key does not belong to the CA certificate");
  EXPECT_EQ(errorOf([&]() { Authority::load(server.certPem, server.keyPem); }),
            "CA certificate is not a CA (basicConstraints CA:TRUE is missing)");
  EXPECT_EQ(errorOf([&]() {
              Authority::load("junk", testCa().keyPem());
            }).startsWith("CA certificate is not a PEM certificate"),
            true);
  EXPECT_EQ(errorOf([&]() { Authority::load(testCa().certPem(), testCa().keyPem()); }),
            "(nothing thrown)");
  EXPECT_EQ(errorOf([]() { Validity::forDays(0); }), "days must be between 1 and 36500, not 0");
}

TEST(CredentialFiles, KeysAre0600AndCertsAre0644WhateverTheUmask) {
  TempDir dir;
  mode_t oldMask = umask(077);
  KJ_DEFER(umask(oldMask));
  writeCredentials(dir.path, "server", localServer(), false);
  EXPECT_EQ(modeOf(dir / "server-key.pem"), 0600u);
  EXPECT_EQ(modeOf(dir / "server.pem"), 0644u);
}

TEST(CredentialFiles, RefusesToOverwriteWithoutForce) {
  TempDir dir;
  writeCredentials(dir.path, "alice", testCa().issueClient("alice", Validity::forDays(1)), false);
  auto before = readFile(dir / "alice.pem");

  auto again = testCa().issueClient("alice", Validity::forDays(1));
  EXPECT_EQ(errorOf([&]() { writeCredentials(dir.path, "alice", again, false); }),
            kj::str(dir / "alice.pem", " already exists (use --force to overwrite it)"));
  EXPECT_EQ(readFile(dir / "alice.pem"), before);

  // With force, a key left readable by someone is replaced by a 0600 one.
  KJ_SYSCALL(chmod((dir / "alice-key.pem").cStr(), 0644));
  writeCredentials(dir.path, "alice", again, true);
  EXPECT_EQ(readFile(dir / "alice.pem"), again.certPem);
  EXPECT_EQ(readFile(dir / "alice-key.pem"), again.keyPem);
  EXPECT_EQ(modeOf(dir / "alice-key.pem"), 0600u);
}

TEST(CredentialFiles, ReadAuthorityLoadsWhatTheCaCommandWrites) {
  TempDir dir;
  writeCredentials(dir.path, "ca", {kj::str(testCa().certPem()), kj::str(testCa().keyPem())},
                   false);
  EXPECT_EQ(modeOf(dir / CA_KEY_FILE), 0600u);
  auto ca = readAuthority(dir.path);
  EXPECT_EQ(ca.certPem(), testCa().certPem());

  TempDir empty;
  EXPECT_EQ(errorOf([&]() { readAuthority(empty.path); }),
            kj::str("cannot read ", empty / "ca.pem", ": No such file or directory"));
}

}  // namespace
}  // namespace certs
}  // namespace runner

// Which certificate subjects name a user, on real OpenSSL certificates built in memory: some of
// these subjects OpenSSL could not even encode, so they are checked as X509 objects here, and the
// ones that can travel are refused in real handshakes in tls-config-test.c++.

#include "tls/client-name.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <initializer_list>

#include "tls/test-certificates.h"

namespace runner {
namespace tls {
namespace {

NameEntry cn(kj::ArrayPtr<const char> value, int type = V_ASN1_UTF8STRING) {
  return {NID_commonName, type, value};
}

Certificate withSubject(std::initializer_list<NameEntry> subject) {
  return certificateWithSubject(kj::arrayPtr(subject.begin(), subject.size()));
}

// What checkClientName() finds, in words; "none" when the certificate names a user.
kj::StringPtr problemOf(const Certificate& cert) {
  KJ_IF_MAYBE (problem, checkClientName(cert.get())) {
    return describe(*problem);
  }
  return "none";
}

// The description of what clientNameOf() throws, or "user: NAME".
kj::String nameOrError(const Certificate& cert) {
  kj::String result;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(
                              [&]() { result = kj::str("user: ", clientNameOf(cert.get())); })) {
    result = kj::str(exception->getDescription());
  }
  return result;
}

// Whether every byte of `text` is printable ASCII (so no raw byte of a bad name got through).
bool isPrintableAscii(kj::StringPtr text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

TEST(ClientName, TheOneCommonNameIsTheUserWhateverItsStringType) {
  auto alice = withSubject({{NID_organizationName, V_ASN1_UTF8STRING, bytes("runner")},
                            cn(bytes("alice")),
                            {NID_organizationalUnitName, V_ASN1_UTF8STRING, bytes("ops")}});
  EXPECT_EQ(problemOf(alice), "none");
  EXPECT_EQ(nameOrError(alice), "user: alice");

  auto accented = withSubject({cn(bytes("Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac"))});
  EXPECT_EQ(problemOf(accented), "none");
  EXPECT_EQ(nameOrError(accented), "user: Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac");

  // The same name in a BMPString is the same user.
  auto bmp = withSubject({cn(bytes("\0a\0l\0i\0c\0e"), V_ASN1_BMPSTRING)});
  EXPECT_EQ(nameOrError(bmp), "user: alice");
}

TEST(ClientName, SeveralCommonNamesNameNobody) {
  // CN=admin,CN=bob: kj-tls would take admin, other tools bob.
  auto twoRdns = withSubject({cn(bytes("admin")), cn(bytes("bob"))});
  // CN=admin+CN=bob: one multi-valued RDN.
  auto oneRdn =
      withSubject({cn(bytes("admin")), {NID_commonName, V_ASN1_UTF8STRING, bytes("bob"), true}});
  for (auto* cert : {&twoRdns, &oneRdn}) {
    EXPECT_EQ(problemOf(*cert), describe(NameProblem::SEVERAL_COMMON_NAMES));
    EXPECT_EQ(nameOrError(*cert),
              "client certificate has more than one common name: \"admin\", \"bob\"");
  }
  // Even twice the same name: a certificate names one user once.
  auto twice = withSubject({cn(bytes("bob")), cn(bytes("bob"))});
  EXPECT_EQ(problemOf(twice), describe(NameProblem::SEVERAL_COMMON_NAMES));
}

TEST(ClientName, AControlCharacterAnywhereNamesNobodyAndIsShownEscaped) {
  struct Case {
    NameEntry entry;
    kj::StringPtr shown;
  };
  Case cases[] = {
      {cn(bytes("bob\x1b[31mroot")), "\"bob\\x1b[31mroot\""},
      {cn(bytes("bob\0admin")), "\"bob\\x00admin\""},
      {cn(bytes("bob\nadmin")), "\"bob\\x0aadmin\""},
      {cn(bytes("\rbob")), "\"\\x0dbob\""},
      {cn(bytes("bob\x7f")), "\"bob\\x7f\""},
      // C1: U+009B is a terminal's one-byte CSI.
      {cn(bytes("bob\xc2\x9b"
                "31m")),
       "\"bob\\xc2\\x9b31m\""},
      // In a BMPString: U+001B.
      {cn(bytes("\0b\0o\0b\0\x1b"), V_ASN1_BMPSTRING), "\"bob\\x1b\""},
      // A T61String's bytes are read as Latin-1: 0x9b becomes U+009B.
      {cn(bytes("bob\x9b"), V_ASN1_T61STRING), "\"bob\\xc2\\x9b\""},
  };
  for (auto& c : cases) {
    auto cert = withSubject({c.entry});
    EXPECT_EQ(problemOf(cert), describe(NameProblem::CONTROL_CHARACTER)) << c.shown.cStr();
    auto error = nameOrError(cert);
    EXPECT_EQ(error,
              kj::str("client certificate's common name contains a control character: ", c.shown));
    EXPECT_TRUE(isPrintableAscii(error)) << c.shown.cStr();
  }
}

TEST(ClientName, BytesThatAreNotUtf8NameNobody) {
  struct Case {
    NameEntry entry;
    kj::StringPtr shown;
  };
  Case cases[] = {
      {cn(bytes("bob\xff")), "\"bob\\xff\""},
      {cn(bytes("bob\xe2\x82")), "\"bob\\xe2\\x82\""},              // cut short
      {cn(bytes("\xc0\xaf")), "\"\\xc0\\xaf\""},                    // overlong '/'
      {cn(bytes("\xed\xa0\x80")), "\"\\xed\\xa0\\x80\""},           // a surrogate
      {cn(bytes("\xf4\x90\x80\x80")), "\"\\xf4\\x90\\x80\\x80\""},  // above U+10FFFF
      // Not a text type at all (yet a subject may hold it): OpenSSL cannot convert it to UTF-8.
      {cn(bytes("\xff\xfe"), V_ASN1_BIT_STRING), "\"\\xff\\xfe\""},
  };
  for (auto& c : cases) {
    auto cert = withSubject({c.entry});
    EXPECT_EQ(problemOf(cert), describe(NameProblem::NOT_UTF8)) << c.shown.cStr();
    auto error = nameOrError(cert);
    EXPECT_EQ(error, kj::str("client certificate's common name is not valid UTF-8: ", c.shown));
    EXPECT_TRUE(isPrintableAscii(error)) << c.shown.cStr();
  }
}

TEST(ClientName, AnEmptyOrMissingCommonNameNamesNobody) {
  auto empty = withSubject({cn(bytes(""))});
  EXPECT_EQ(problemOf(empty), describe(NameProblem::EMPTY_COMMON_NAME));
  EXPECT_EQ(nameOrError(empty), "client certificate has an empty common name: \"\"");

  auto none = withSubject({{NID_organizationName, V_ASN1_UTF8STRING, bytes("runner")}});
  EXPECT_EQ(problemOf(none), describe(NameProblem::NO_COMMON_NAME));
  EXPECT_EQ(nameOrError(none), "client certificate has no common name");

  auto nothing = withSubject({});
  EXPECT_EQ(problemOf(nothing), describe(NameProblem::NO_COMMON_NAME));
}

TEST(ClientName, MessagesShowBoundedNames) {
  // 300 ESC bytes: the message shows the first 128, escaped, and says there is more.
  auto longName = kj::heapArray<char>(300);
  memset(longName.begin(), '\x1b', longName.size());
  auto cert = withSubject({cn(longName)});
  auto error = nameOrError(cert);
  EXPECT_EQ(error, kj::str("client certificate's common name contains a control character: \"",
                           kj::strArray(kj::repeat("\\x1b"_kj, 128), ""), "\"..."));

  // Six names: four are shown.
  auto many = withSubject({cn(bytes("a")), cn(bytes("b")), cn(bytes("c")), cn(bytes("d")),
                           cn(bytes("e")), cn(bytes("f"))});
  EXPECT_EQ(nameOrError(many),
            "client certificate has more than one common name: \"a\", \"b\", \"c\", \"d\", ...");
}

TEST(ClientName, ShowNameMapsBackToExactlyOneByteString) {
  EXPECT_EQ(showName(bytes("alice")), "\"alice\"");
  EXPECT_EQ(showName(bytes("a\\x41\"b")), "\"a\\\\x41\\\"b\"");
  EXPECT_EQ(showName(bytes("\0\x01\x1f \x7e\x7f\x80\xff")), "\"\\x00\\x01\\x1f ~\\x7f\\x80\\xff\"");
  EXPECT_EQ(showName(bytes("Jos\xc3\xa9")), "\"Jos\\xc3\\xa9\"");
  EXPECT_EQ(showName(bytes("")), "\"\"");
}

TEST(ClientName, EveryProblemHasItsOwnReason) {
  EXPECT_EQ(describe(NameProblem::NO_COMMON_NAME), "client certificate has no common name");
  EXPECT_EQ(describe(NameProblem::SEVERAL_COMMON_NAMES),
            "client certificate has more than one common name");
  EXPECT_EQ(describe(NameProblem::EMPTY_COMMON_NAME),
            "client certificate has an empty common name");
  EXPECT_EQ(describe(NameProblem::NOT_UTF8), "client certificate's common name is not valid UTF-8");
  EXPECT_EQ(describe(NameProblem::CONTROL_CHARACTER),
            "client certificate's common name contains a control character");
}

}  // namespace
}  // namespace tls
}  // namespace runner

#include "tls/client-name.h"

#include <kj/debug.h>
#include <kj/vector.h>
#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

namespace runner {
namespace tls {

namespace {

// How much of a name, and how many names, an error message shows.
constexpr size_t SHOWN_BYTES = 128;
constexpr size_t SHOWN_NAMES = 4;

// One common name as UTF-8, or as the raw bytes of its ASN.1 string when OpenSSL cannot convert
// it (a UTF8String that is not UTF-8, say).
struct CommonName {
  kj::Array<char> bytes;
  bool converted;
};

CommonName readCommonName(X509_NAME_ENTRY* entry) {
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(entry);
  KJ_ASSERT(data != nullptr);
  unsigned char* utf8 = nullptr;
  // A failed conversion leaves errors behind; they must not join a handshake's (see ServerTls).
  ERR_set_mark();
  int length = ASN1_STRING_to_UTF8(&utf8, data);
  ERR_pop_to_mark();
  if (length < 0) {
    auto raw = reinterpret_cast<const char*>(ASN1_STRING_get0_data(data));
    return {kj::heapArray(raw, ASN1_STRING_length(data)), false};
  }
  KJ_DEFER(OPENSSL_free(utf8));
  return {kj::heapArray(reinterpret_cast<const char*>(utf8), length), true};
}

kj::Vector<CommonName> readCommonNames(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  kj::Vector<CommonName> names;
  if (subject == nullptr) return names;
  for (int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); index >= 0;
       index = X509_NAME_get_index_by_NID(subject, NID_commonName, index)) {
    names.add(readCommonName(X509_NAME_get_entry(subject, index)));
  }
  return names;
}

// The length of the UTF-8 sequence that starts `text`, storing its code point in `codePoint`; 0
// when `text` does not start with one. Strict (RFC 3629): no overlong forms, no surrogates,
// nothing above U+10FFFF.
size_t decodeUtf8(kj::ArrayPtr<const char> text, uint32_t& codePoint) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  uint8_t first = byte(0);
  size_t length;
  uint32_t minimum;
  if (first < 0x80) {
    codePoint = first;
    return 1;
  } else if (first >= 0xc2 && first <= 0xdf) {
    length = 2, minimum = 0x80, codePoint = first & 0x1f;
  } else if (first >= 0xe0 && first <= 0xef) {
    length = 3, minimum = 0x800, codePoint = first & 0x0f;
  } else if (first >= 0xf0 && first <= 0xf4) {
    length = 4, minimum = 0x10000, codePoint = first & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; i++) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    codePoint = (codePoint << 6) | (byte(i) & 0x3f);
  }
  if (codePoint < minimum || codePoint > 0x10ffff) return 0;
  if (codePoint >= 0xd800 && codePoint <= 0xdfff) return 0;
  return length;
}

bool isControl(uint32_t codePoint) {
  return codePoint < 0x20 || (codePoint >= 0x7f && codePoint <= 0x9f);
}

kj::Maybe<NameProblem> problemOf(kj::ArrayPtr<const CommonName> names) {
  if (names.size() == 0) return NameProblem::NO_COMMON_NAME;
  if (names.size() > 1) return NameProblem::SEVERAL_COMMON_NAMES;
  auto& name = names[0];
  if (!name.converted) return NameProblem::NOT_UTF8;
  if (name.bytes.size() == 0) return NameProblem::EMPTY_COMMON_NAME;
  bool control = false;
  for (auto rest = name.bytes.asPtr(); rest.size() > 0;) {
    uint32_t codePoint;
    size_t length = decodeUtf8(rest, codePoint);
    if (length == 0) return NameProblem::NOT_UTF8;
    control = control || isControl(codePoint);
    rest = rest.slice(length, rest.size());
  }
  if (control) return NameProblem::CONTROL_CHARACTER;
  return nullptr;
}

kj::String showNames(kj::ArrayPtr<const CommonName> names) {
  kj::Vector<kj::String> shown;
  for (auto& name : names.slice(0, kj::min(names.size(), SHOWN_NAMES))) {
    auto bytes = name.bytes.asPtr();
    if (bytes.size() <= SHOWN_BYTES) {
      shown.add(showName(bytes));
    } else {
      shown.add(kj::str(showName(bytes.slice(0, SHOWN_BYTES)), "..."));
    }
  }
  if (names.size() > SHOWN_NAMES) shown.add(kj::str("..."));
  return kj::strArray(shown, ", ");
}

}  // namespace

kj::StringPtr describe(NameProblem problem) {
  switch (problem) {
    case NameProblem::NO_COMMON_NAME:
      return "client certificate has no common name";
    case NameProblem::SEVERAL_COMMON_NAMES:
      return "client certificate has more than one common name";
    case NameProblem::EMPTY_COMMON_NAME:
      return "client certificate has an empty common name";
    case NameProblem::NOT_UTF8:
      return "client certificate's common name is not valid UTF-8";
    case NameProblem::CONTROL_CHARACTER:
      return "client certificate's common name contains a control character";
  }
  KJ_UNREACHABLE;
}

kj::Maybe<NameProblem> checkClientName(X509* cert) {
  return problemOf(readCommonNames(cert));
}

kj::String clientNameOf(X509* cert) {
  auto names = readCommonNames(cert);
  KJ_IF_MAYBE (problem, problemOf(names)) {
    if (*problem == NameProblem::NO_COMMON_NAME) KJ_FAIL_REQUIRE(kj::str(describe(*problem)));
    KJ_FAIL_REQUIRE(kj::str(describe(*problem), ": ", showNames(names)));
  }
  return kj::heapString(names[0].bytes);
}

kj::String showName(kj::ArrayPtr<const char> bytes) {
  static constexpr char HEX[] = "0123456789abcdef";
  kj::Vector<char> shown(bytes.size() + 3);
  shown.add('"');
  for (char c : bytes) {
    auto byte = static_cast<uint8_t>(c);
    if (c == '\\' || c == '"') {
      shown.add('\\');
      shown.add(c);
    } else if (byte >= 0x20 && byte < 0x7f) {
      shown.add(c);
    } else {
      shown.addAll("\\x"_kj);
      shown.add(HEX[byte >> 4]);
      shown.add(HEX[byte & 0xf]);
    }
  }
  shown.add('"');
  shown.add('\0');
  return kj::String(shown.releaseAsArray());
}

}  // namespace tls
}  // namespace runner

#pragma once
// The user a client certificate names: the one common name (CN) of its subject.
//
// A certificate names nobody when its subject has no CN, or more than one (kj-tls reads the first
// CN, other tools read the last: `CN=admin,CN=bob` must not be admin to one and bob to another),
// or when that CN is empty, is not valid UTF-8, or contains a control character (C0, DEL or C1):
// a name is written into logs, job records and other users' terminals, and must not be able to
// forge a line there or drive a terminal.

#include <kj/common.h>
#include <kj/string.h>
#include <openssl/types.h>

namespace runner {
namespace tls {

// Why a certificate names no user.
enum class NameProblem {
  NO_COMMON_NAME,
  SEVERAL_COMMON_NAMES,
  EMPTY_COMMON_NAME,
  NOT_UTF8,
  CONTROL_CHARACTER,
};

// The reason in words, without the name itself: "client certificate has more than one common
// name". A static string, so that it can travel through OpenSSL's error queue (see ServerTls).
kj::StringPtr describe(NameProblem problem);

// Why `cert` names no user, or null when it names one. Never throws for a bad name.
kj::Maybe<NameProblem> checkClientName(X509* cert);

// The user `cert` names. Otherwise throws one line that says why, then shows the common names as
// showName() renders them: `client certificate has more than one common name: "admin", "bob"`.
kj::String clientNameOf(X509* cert);

// `bytes` between double quotes, safe to write into a log line or onto a terminal: printable
// ASCII stays as it is, except that `\` and `"` become `\\` and `\"`; every other byte (controls,
// DEL, and each byte of a non-ASCII character, valid UTF-8 or not) becomes `\xHH`. The result is
// plain ASCII and maps back to exactly one byte string.
kj::String showName(kj::ArrayPtr<const char> bytes);

}  // namespace tls
}  // namespace runner

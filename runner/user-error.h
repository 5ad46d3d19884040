#pragma once
// Errors a user reads. Every failure runnerd answers a client with is one line that starts with
// its kind, a fixed word or two, then ": " and the message, formatted once, here on the server:
// "not found: job 42", "limit: too many running jobs for alice (limit 5); ...". A client tests
// the kind, never the prose (schema/runner.capnp lists the kinds); runctl prints the line as it
// is. The exception's type stays what capnp's types mean: OVERLOADED for a limit, and whatever
// the cause's was for an error passed on.

#include <kj/common.h>
#include <kj/exception.h>
#include <kj/string.h>
#include <stdint.h>

namespace runner {

enum class ErrorKind : uint8_t {
  // "not found": a job id, name or id prefix names no job.
  NOT_FOUND,
  // "permission denied": the caller may not do this (not the job's owner nor an admin, ...).
  PERMISSION_DENIED,
  // "limit": a bound or quota of the connection, the user or the server is reached; OVERLOADED.
  LIMIT,
  // "invalid": an argument, spec, cursor, signal, duration, ... the server never accepts.
  INVALID,
  // "conflict": the request clashes with the job's state (a name in use, a job that has ended,
  // is still running, or was removed).
  CONFLICT,
  // "unavailable": the server cannot do it now (its supervisor is down, its store or disk is
  // failing or full); worth trying again later.
  UNAVAILABLE,
  // "internal": anything else; a bug of the server's, logged there in full.
  INTERNAL,
};

// The kind's words, without the ": " that follows them in a description: "not found", ...
kj::StringPtr errorKindName(ErrorKind kind);

// An exception whose description is exactly "<kind>: <message>", on one line (a line break in
// `message` becomes a space). Its type is OVERLOADED for LIMIT and FAILED for the others, unless
// given. `file` and `line` are the caller's, for the server's log.
kj::Exception userError(ErrorKind kind, kj::StringPtr message, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE());
kj::Exception userError(ErrorKind kind, kj::Exception::Type type, kj::StringPtr message,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE());

// Throws userError(kind, message).
[[noreturn]] void throwUserError(ErrorKind kind, kj::StringPtr message,
                                 const char* file = __builtin_FILE(), int line = __builtin_LINE());
[[noreturn]] void throwUserError(ErrorKind kind, kj::Exception::Type type, kj::StringPtr message,
                                 const char* file = __builtin_FILE(), int line = __builtin_LINE());

// The kind `description` starts with ("<kind>: "), if any.
kj::Maybe<ErrorKind> errorKindOf(kj::StringPtr description);

// `description` after its "<kind>: ", or all of it without a kind.
kj::StringPtr withoutErrorKind(kj::StringPtr description);

// What a client may be told of `exception`: the exception itself when its description starts with
// a kind; otherwise "internal: <its description on one line>", of the same type, file and line.
// The caller logs the original.
kj::Exception withErrorKind(kj::Exception&& exception);

// `exception`, which may have come from another process over capnp ("remote exception: ..."), as
// this server passes it on to a client: without the "remote exception: " prefixes, with the kind
// it carries, or else with `fallback`; its type, file ("(remote)" for another process's) and line
// kept. Without either kind it has none (withErrorKind() then makes it internal).
kj::Exception passedOn(kj::Exception&& exception, kj::Maybe<ErrorKind> fallback);

}  // namespace runner

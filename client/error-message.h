#pragma once
// Turns exceptions (thrown by runnerd and carried back over RPC, or local) into the one line
// runctl prints after "runctl: ".

#include <kj/exception.h>
#include <kj/string.h>

namespace runner {
namespace client {

// The line for `exception`. A failure the server answered with reaches runctl as "remote
// exception: REASON", and runnerd has worded REASON already ("not found: job 42", kind first;
// schema/runner.capnp): that is the line, as it is. Anything else failed here (connecting, TLS, a
// file) and gets cleanErrorMessage().
kj::String errorLine(const kj::Exception& exception);

// For runctl's own failures: one line, no file:line, no "remote exception: " prefix.
// KJ_REQUIRE-style descriptions ("expected CONDITION; MESSAGE; NAME = VALUE; ...") keep their
// message and values: "expected fd >= 0; cannot read the key; path = /k" becomes "cannot read the
// key: /k". Any other description is kept as it is, on one line.
kj::String cleanErrorMessage(const kj::Exception& exception);

// The same, for a bare description.
kj::String cleanErrorMessage(kj::StringPtr description);

}  // namespace client
}  // namespace runner

#pragma once
// Turns exceptions (local, or thrown by runnerd and carried back over RPC) into the one clean line
// runctl prints after "runctl: ".

#include <kj/exception.h>
#include <kj/string.h>

namespace runner {
namespace client {

// One line, no file:line, no "remote exception: " prefix. KJ_REQUIRE-style descriptions
// ("expected CONDITION; MESSAGE; NAME = VALUE; ...") keep their message and values:
// "expected found != nullptr; job not found; id = 42" becomes "job not found: 42". Any other
// description is kept as it is, on one line.
kj::String cleanErrorMessage(const kj::Exception& exception);

// The same, for a bare description.
kj::String cleanErrorMessage(kj::StringPtr description);

}  // namespace client
}  // namespace runner

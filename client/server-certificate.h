// Why the server's certificate was refused, in words a user can act on. A failed TLS handshake
// only says "certificate verify failed"; this looks at the certificate itself.

#pragma once

#include <kj/common.h>
#include <kj/string.h>

namespace runner {
namespace client {

// Connects to `server` (HOST:PORT) again without verifying it, takes the certificate it presents
// and says what is wrong with it against the CA in `caFile` and the name `serverName`: not signed
// by that CA, expired or not yet valid, or not carrying the name. nullptr when it cannot tell
// (the server is gone, or the certificate passes both checks). Blocks for at most a few seconds:
// for an error message, not for the event loop.
kj::Maybe<kj::String> diagnoseServerCertificate(kj::StringPtr server, kj::StringPtr serverName,
                                                kj::StringPtr caFile, kj::StringPtr certFile,
                                                kj::StringPtr keyFile);

}  // namespace client
}  // namespace runner

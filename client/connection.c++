#include "client/connection.h"

#include <kj/debug.h>
#include <stdlib.h>

#include "client/error-message.h"
#include "client/server-certificate.h"

#include <string.h>

namespace runner {
namespace client {

namespace {

// A setting from its flag, else from its environment variable.
kj::Maybe<kj::String> lookUp(const kj::Maybe<kj::String>& flag, kj::StringPtr flagName,
                             kj::StringPtr variable, EnvLookup& getEnv) {
  KJ_IF_MAYBE (value, flag) {
    KJ_REQUIRE(value->size() > 0, kj::str(flagName, " must not be empty"));
    return kj::str(*value);
  }
  KJ_IF_MAYBE (value, getEnv(variable)) {
    return kj::str(*value);
  }
  return nullptr;
}

kj::String require(const kj::Maybe<kj::String>& flag, kj::StringPtr flagName,
                   kj::StringPtr variable, EnvLookup& getEnv) {
  KJ_IF_MAYBE (value, lookUp(flag, flagName, variable, getEnv)) {
    return kj::mv(*value);
  }
  KJ_FAIL_REQUIRE(kj::str("missing ", flagName, " (or set ", variable, ")"));
}

}  // namespace

kj::Maybe<kj::StringPtr> processEnv(kj::StringPtr name) {
  const char* value = getenv(name.cStr());
  if (value == nullptr || *value == '\0') return nullptr;
  return kj::StringPtr(value);
}

ServerSettings resolveServerSettings(const ServerFlags& flags, EnvLookup getEnv) {
  kj::String server = kj::str(DEFAULT_SERVER);
  KJ_IF_MAYBE (value, lookUp(flags.server, "--server", "RUNCTL_SERVER", getEnv)) {
    server = kj::mv(*value);
  }
  // Checks the HOST:PORT form now, as a usage error, rather than at connect time.
  kj::String host = tls::ClientTls::hostOf(server);
  kj::String serverName = kj::mv(host);
  KJ_IF_MAYBE (value, lookUp(flags.serverName, "--server-name", "RUNCTL_SERVER_NAME", getEnv)) {
    serverName = kj::mv(*value);
  }
  auto cert = require(flags.cert, "--cert", "RUNCTL_CERT", getEnv);
  auto key = require(flags.key, "--key", "RUNCTL_KEY", getEnv);
  auto ca = require(flags.ca, "--ca", "RUNCTL_CA", getEnv);
  return {kj::mv(server), kj::mv(serverName), kj::mv(cert), kj::mv(key), kj::mv(ca)};
}

ServerConnection::ServerConnection(kj::Own<tls::ClientTls> tlsParam,
                                   kj::Own<kj::AsyncIoStream> streamParam)
    : tls(kj::mv(tlsParam)),
      stream(kj::mv(streamParam)),
      rpc(*stream),
      jobManagerCap(rpc.bootstrap().castAs<api::JobManager>()) {}

namespace {

// Whether a handshake failed because the peer closed the connection, not for a reason TLS gave.
bool closedDuringHandshake(kj::StringPtr message) {
  for (auto sign : {"unable to continue I/O"_kj, "Connection reset by peer"_kj,
                    "peer disconnected"_kj, "unexpected eof"_kj, "EOF"_kj}) {
    if (strstr(message.cStr(), sign.cStr()) != nullptr) return true;
  }
  return false;
}

}  // namespace

kj::Promise<kj::Own<ServerConnection>> connectToServer(kj::Network& network,
                                                       const ServerSettings& settings) {
  auto tls = kj::heap<tls::ClientTls>(tls::TlsFiles{settings.cert, settings.key, settings.ca});
  auto connecting = tls->connect(network, settings.server, settings.serverName);
  return connecting
      .then([tls = kj::mv(tls)](kj::Own<kj::AsyncIoStream> stream) mutable {
        return kj::heap<ServerConnection>(kj::mv(tls), kj::mv(stream));
      })
      .catch_(
          [server = kj::str(settings.server), name = kj::str(settings.serverName),
           ca = kj::str(settings.ca), cert = kj::str(settings.cert),
           key = kj::str(settings.key)](kj::Exception&& exception) -> kj::Own<ServerConnection> {
            auto message = cleanErrorMessage(exception);
            if (strstr(message.cStr(), "certificate verify failed") != nullptr) {
              // OpenSSL says only that: the certificate itself says why.
              KJ_IF_MAYBE (why, diagnoseServerCertificate(server, name, ca, cert, key)) {
                message = kj::mv(*why);
              }
            }
            if (closedDuringHandshake(message)) {
              // No TLS alert, no reason: runnerd refuses connections this way when it has too
              // many, or is short of descriptors, to spend a handshake on them.
              message = kj::str(
                  "the server closed the connection before the TLS handshake "
                  "completed; it may be refusing connections (too many open, or short "
                  "of resources: its log says which); try again later");
            }
            kj::throwFatalException(
                KJ_EXCEPTION(DISCONNECTED, kj::str("cannot connect to ", server, ": ", message)));
          });
}

}  // namespace client
}  // namespace runner

#pragma once
// runctl's way to runnerd: where to connect and with which credentials (flags first, then the
// RUNCTL_* environment variables), and the mutual-TLS Cap'n Proto connection that yields the
// JobManager bound to the caller's certificate.

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/string.h>

#include "schema/runner.capnp.h"
#include "tls/tls-config.h"

namespace runner {
namespace client {

constexpr const char* DEFAULT_SERVER = "127.0.0.1:7443";

// What the user gave on the command line; null when a flag was not given.
struct ServerFlags {
  kj::Maybe<kj::String> server;
  kj::Maybe<kj::String> serverName;
  kj::Maybe<kj::String> cert;
  kj::Maybe<kj::String> key;
  kj::Maybe<kj::String> ca;
};

struct ServerSettings {
  // HOST:PORT or [IPV6]:PORT.
  kj::String server;
  // The name the server's certificate must carry; by default the host part of `server`.
  kj::String serverName;
  // PEM files: this client's certificate and key, and the CA that signed the server's.
  kj::String cert;
  kj::String key;
  kj::String ca;
};

// Looks up an environment variable; null when it is unset or empty.
using EnvLookup = kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr name)>;

// The process's own environment.
kj::Maybe<kj::StringPtr> processEnv(kj::StringPtr name);

// Each setting from its flag, else from its variable (RUNCTL_SERVER, RUNCTL_SERVER_NAME,
// RUNCTL_CERT, RUNCTL_KEY, RUNCTL_CA), else its default. Throws one line naming the flag and the
// variable when a credential is missing, or when the server is not HOST:PORT: a usage error.
ServerSettings resolveServerSettings(const ServerFlags& flags, EnvLookup getEnv);

// An open RPC connection to runnerd. Owns everything the connection needs.
class ServerConnection {
 public:
  ServerConnection(kj::Own<tls::ClientTls> tls, kj::Own<kj::AsyncIoStream> stream);
  KJ_DISALLOW_COPY(ServerConnection);

  // The bootstrap capability: bound by the server to the identity in our certificate.
  api::JobManager::Client jobManager() { return jobManagerCap; }

  // Resolves when the connection is gone.
  kj::Promise<void> onDisconnect() { return rpc.onDisconnect(); }

 private:
  kj::Own<tls::ClientTls> tls;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
  api::JobManager::Client jobManagerCap;
};

// Reads the credential files (throwing one line naming a bad file), then connects and completes
// the TLS handshake. A failure to connect rejects with
// "cannot connect to HOST:PORT: REASON" (type DISCONNECTED).
kj::Promise<kj::Own<ServerConnection>> connectToServer(kj::Network& network,
                                                       const ServerSettings& settings);

}  // namespace client
}  // namespace runner

#pragma once
// Server: runnerd's accept loop. Plain TCP connections are accepted, wrapped in TLS one by one
// (so a refused handshake can be logged with the peer's address), and each gets its own RPC
// system whose bootstrap JobManager is bound to the client certificate's common name.

#include <kj/async-io.h>
#include <kj/vector.h>

#include "runner/event-log.h"
#include "runner/job-table.h"
#include "runner/rpc-service.h"
#include "tls/tls-config.h"

namespace runner {

// Connections whose TLS handshake is still under way. Each costs a socket and TLS state before
// anyone is authenticated, so they are bounded (and each times out, see tls::ServerTls). One
// address may hold as many as a busy client host opens at once (say, a script starting dozens
// of runctl); past that, its own oldest handshake makes room for its new one, so a flood from
// one address only ever evicts itself. When all are taken, the oldest handshake of the address
// holding the most is evicted.
constexpr size_t MAX_PENDING_HANDSHAKES = 1024;
constexpr size_t MAX_PENDING_HANDSHAKES_PER_ADDRESS = 64;

// Authenticated connections open at once, and per user: one user cannot take them all.
constexpr size_t MAX_CONNECTIONS = 1024;
constexpr size_t MAX_CONNECTIONS_PER_USER = 32;

// Largest RPC message the server reads, in 8-byte words (2 MiB): a spec (at most MAX_SPEC_BYTES)
// and its framing. A message is received whole before it is read, so this is also what one
// connection's partly received message may hold.
constexpr uint64_t MAX_REQUEST_WORDS = 256 * 1024;

// What the calls of one connection that have not returned yet may hold, in words of their
// messages (256 KiB, some 4,000 of the smallest calls): past it, the server reads nothing more
// from the connection until some return. One call larger than this is still served.
constexpr size_t CONNECTION_FLOW_LIMIT_WORDS = 32 * 1024;

// A connection with no call being served and no output watch, and that made no call for this
// long, is closed.
constexpr kj::Duration IDLE_CONNECTION_TIMEOUT = 5 * kj::MINUTES;

// How long runnerd waits before accepting again after accept() failed.
constexpr kj::Duration ACCEPT_RETRY_DELAY = 100 * kj::MILLISECONDS;

class Server {
 public:
  // `admins` are the user names that may stop and read every job.
  // `timer` paces retries after a failed accept().
  // `idleTimeout`: see IDLE_CONNECTION_TIMEOUT (tests shorten it).
  Server(JobTable& table, tls::ServerTls& tls, kj::Timer& timer, EventLog& log,
         kj::Array<kj::String> admins, kj::Duration idleTimeout = IDLE_CONNECTION_TIMEOUT);
  ~Server() noexcept(false);
  KJ_DISALLOW_COPY(Server);

  // Accepts connections until the promise is dropped. Errors of single connections, and of
  // accept() itself (out of descriptors, say), are logged, never fatal.
  kj::Promise<void> listen(kj::ConnectionReceiver& receiver);

 private:
  JobTable& table;
  tls::ServerTls& tls;
  kj::Timer& timer;
  EventLog& log;
  kj::Array<kj::String> admins;
  kj::Duration idleTimeout;
  size_t connections = 0;
  // Users with at least one connection.
  kj::HashMap<kj::String, kj::Own<UserUsage>> users;

  // A TLS handshake under way, oldest first in `pending`. Destroying one cancels the handshake
  // and closes its connection.
  struct PendingHandshake {
    kj::String peer;
    // The peer's address without its port.
    kj::String host;
    kj::Promise<void> task = nullptr;
    bool done = false;
  };
  kj::Vector<kj::Own<PendingHandshake>> pending;

  LoggedTaskErrors errorHandler;
  kj::TaskSet tasks;

  class Connection;

  void handshake(kj::AuthenticatedStream stream);
  kj::Promise<void> serve(kj::AuthenticatedStream secured, kj::String peer);
  // Resolves once the connection of `caller` has been idle for idleTimeout.
  kj::Promise<void> whenIdle(Caller& caller, uint64_t lastActivity);
  // Forgets the handshakes that have finished (from outside their own continuations).
  void sweepHandshakes();
  // Cancels the oldest pending handshake from `host`, to make room.
  void evictOldestFrom(kj::StringPtr host, kj::StringPtr why);
  bool isAdmin(kj::StringPtr user) const;
};

}  // namespace runner

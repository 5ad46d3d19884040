#pragma once
// Server: runnerd's accept loop. Plain TCP connections are accepted, wrapped in TLS one by one
// (so a refused handshake can be logged with the peer's address), and each gets its own RPC
// system whose bootstrap JobManager is bound to the client certificate's common name.

#include <kj/async-io.h>
#include <kj/vector.h>

#include "runner/event-log.h"
#include "runner/job-table.h"
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

// Authenticated connections open at once.
constexpr size_t MAX_CONNECTIONS = 1024;

// Largest RPC message the server reads, in 8-byte words (32 MiB). A spec is bounded far below
// it (MAX_SPEC_BYTES); capnp also refuses to send a message larger than this, which bounds the
// answer to `list`.
constexpr uint64_t MAX_REQUEST_WORDS = 4 * 1024 * 1024;

// How long runnerd waits before accepting again after accept() failed.
constexpr kj::Duration ACCEPT_RETRY_DELAY = 100 * kj::MILLISECONDS;

class Server {
 public:
  // `admins` are the user names that may stop and read every job.
  // `timer` paces retries after a failed accept().
  Server(JobTable& table, tls::ServerTls& tls, kj::Timer& timer, EventLog& log,
         kj::Array<kj::String> admins);
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
  size_t connections = 0;

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
  // Forgets the handshakes that have finished (from outside their own continuations).
  void sweepHandshakes();
  // Cancels the oldest pending handshake from `host`, to make room.
  void evictOldestFrom(kj::StringPtr host, kj::StringPtr why);
  bool isAdmin(kj::StringPtr user) const;
};

}  // namespace runner

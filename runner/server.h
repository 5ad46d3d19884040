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
// anyone is authenticated, so they are bounded (and each times out, see tls::ServerTls).
constexpr size_t MAX_PENDING_HANDSHAKES = 64;

// Authenticated connections open at once.
constexpr size_t MAX_CONNECTIONS = 1024;

// Largest RPC message the server reads, in 8-byte words: far above any real request (a spec
// is bounded by MAX_ARGS and MAX_ENV), far below what would let one request pin much memory.
constexpr uint64_t MAX_REQUEST_WORDS = 1024 * 1024;

class Server {
 public:
  // `admins` are the user names that may stop and read every job.
  Server(JobTable& table, tls::ServerTls& tls, EventLog& log, kj::Array<kj::String> admins);
  ~Server() noexcept(false);
  KJ_DISALLOW_COPY(Server);

  // Accepts connections until the promise is dropped. Errors of single connections are
  // logged, never fatal.
  kj::Promise<void> listen(kj::ConnectionReceiver& receiver);

  // Connections currently open.
  size_t connectionCount() const { return connections; }

 private:
  JobTable& table;
  tls::ServerTls& tls;
  EventLog& log;
  kj::Array<kj::String> admins;
  size_t connections = 0;
  size_t pendingHandshakes = 0;

  LoggedTaskErrors errorHandler;
  kj::TaskSet tasks;

  class Connection;

  kj::Promise<void> handshake(kj::AuthenticatedStream stream);
  bool isAdmin(kj::StringPtr user) const;
};

}  // namespace runner

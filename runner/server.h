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

  LoggedTaskErrors errorHandler;
  kj::TaskSet tasks;

  class Connection;

  kj::Promise<void> handshake(kj::AuthenticatedStream stream);
  bool isAdmin(kj::StringPtr user) const;
};

}  // namespace runner

#pragma once
// Server: runnerd's accept loop. Plain TCP connections are accepted, wrapped in TLS one by one
// (so a refused handshake can be logged with the peer's address), and each gets its own RPC
// system whose bootstrap JobManager is bound to the client certificate's common name.

#include <kj/async-io.h>
#include <kj/list.h>
#include <kj/map.h>
#include <kj/vector.h>

#include "runner/event-log.h"
#include "runner/job-table.h"
#include "runner/metered-network.h"
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

// Largest RPC message the server reads, in 8-byte words (2 MiB): a spec (at most MAX_SPEC_BYTES)
// and its framing. A message is received whole before it is read, so this is also what one
// connection's partly received message may hold.
constexpr uint64_t MAX_REQUEST_WORDS = 256 * 1024;

// What the calls of one connection that have not returned yet may hold, in words of their
// messages (256 KiB, some 4,000 of the smallest calls): past it, the server reads nothing more
// from the connection until some return. One call larger than this is still served.
constexpr size_t CONNECTION_FLOW_LIMIT_WORDS = 32 * 1024;

struct ServerLimits {
  // Authenticated connections open at once, and per user: one user cannot take them all.
  size_t connections = 1024;
  size_t connectionsPerUser = 32;
  // A connection with no call being served and no output watch, and that made no call for this
  // long, is closed.
  kj::Duration idleTimeout = 5 * kj::MINUTES;
  ConnectionLimits perConnection;
  // Answers a connection, and a user, may leave unfinished (see MeteredNetwork).
  UnfinishedLimits unfinished;
};

// Refusals (of handshakes, connections) logged one by one per REFUSAL_LOG_WINDOW; past that they
// are counted, and one line per window says how many were not logged.
constexpr size_t REFUSALS_LOGGED_PER_WINDOW = 20;
constexpr kj::Duration REFUSAL_LOG_WINDOW = 10 * kj::SECONDS;

// How long a refused client has to take the reason before its connection is closed.
constexpr kj::Duration REFUSAL_WRITE_TIMEOUT = 1 * kj::SECONDS;

// Handshakes since the last release of memory past which a drained flood gives memory back, and
// how long the handshakes must have been drained first.
constexpr size_t TRIM_AFTER_HANDSHAKES = 256;
constexpr kj::Duration TRIM_DELAY = 1 * kj::SECONDS;

// How long runnerd waits before accepting again after accept() failed.
constexpr kj::Duration ACCEPT_RETRY_DELAY = 100 * kj::MILLISECONDS;

// Why an accepted connection was closed before it was served, for the metrics.
enum class ConnectionRefusal : uint8_t {
  TOO_MANY_CONNECTIONS,
  SHORT_OF_DESCRIPTORS,
  TOO_MANY_FOR_USER,
  NO_USER,
};
constexpr size_t CONNECTION_REFUSALS = 4;
// "too_many_connections", "short_of_descriptors", "too_many_for_user", "no_user".
kj::StringPtr refusalName(ConnectionRefusal refusal);

// What the server counts for the metrics, on the event loop's thread.
struct ServerMetrics {
  uint64_t accepted = 0;
  // By tls::HandshakeRefusal; the last one, EVICTED_HANDSHAKE, counts the handshakes in progress
  // dropped to make room for others.
  static constexpr size_t EVICTED_HANDSHAKE = tls::HANDSHAKE_REFUSALS;
  uint64_t handshakesRefused[tls::HANDSHAKE_REFUSALS + 1] = {};
  uint64_t connectionsRefused[CONNECTION_REFUSALS] = {};
};

class Server {
 public:
  // `admins` are the user names that may stop and read every job.
  // `timer` paces retries after a failed accept().
  Server(JobTable& table, tls::ServerTls& tls, kj::Timer& timer, EventLog& log,
         kj::Array<kj::String> admins, ServerLimits limits = ServerLimits());
  ~Server() noexcept(false);
  KJ_DISALLOW_COPY(Server);

  // From now on, handshakes use `tls` (which must outlive them, or the next reload) and
  // connections are authorized with `admins`. Connections already established keep their
  // identity and their rights; handshakes under way finish with the TLS they began with.
  void reload(tls::ServerTls& tls, kj::Array<kj::String> admins);

  // Accepts connections until the promise is dropped. Errors of single connections, and of
  // accept() itself (out of descriptors, say), are logged, never fatal.
  // Refusals are logged at most REFUSALS_LOGGED_PER_WINDOW per window (logRefusal).
  kj::Promise<void> listen(kj::ConnectionReceiver& receiver);

  const ServerMetrics& metrics() const { return counted; }
  // Authenticated connections open, and TLS handshakes under way.
  size_t openConnections() const { return connections; }
  size_t handshakesInProgress() const { return pending.size(); }

 private:
  JobTable& table;
  tls::ServerTls* tls;
  kj::Timer& timer;
  EventLog& log;
  kj::Array<kj::String> admins;
  ServerLimits limits;
  size_t connections = 0;
  ServerMetrics counted;
  // Users with at least one connection.
  kj::HashMap<kj::String, kj::Own<UserUsage>> users;

  // The TLS handshakes under way, by address. Admitting, finishing and evicting one costs O(1)
  // whatever the number of addresses: each address keeps its own oldest-first list, and the
  // addresses are kept in buckets by how many handshakes they hold (at most
  // MAX_PENDING_HANDSHAKES_PER_ADDRESS), the fullest found from the top.
  struct PendingHost;
  struct PendingHandshake {
    uint64_t id;
    kj::String peer;
    PendingHost* host;
    kj::ListLink<PendingHandshake> link;
    // Destroying it cancels the handshake and closes its connection.
    kj::Promise<void> task = nullptr;
  };
  struct PendingHost {
    kj::String host;
    kj::List<PendingHandshake, &PendingHandshake::link> handshakes;
    kj::ListLink<PendingHost> bucketLink;
  };
  kj::HashMap<uint64_t, kj::Own<PendingHandshake>> pending;
  kj::HashMap<kj::StringPtr, kj::Own<PendingHost>> pendingHosts;
  // buckets[n]: the addresses holding n handshakes (n >= 1).
  kj::Array<kj::List<PendingHost, &PendingHost::bucketLink>> buckets;
  size_t fullestBucket = 0;
  uint64_t nextHandshakeId = 0;
  // Handshakes begun since the allocator last gave memory back (see releaseMemoryAfterFlood).
  size_t handshakesSinceTrim = 0;
  bool trimScheduled = false;
  kj::Maybe<kj::Promise<void>> trim;

  // Refusals logged in the current window, and those that were not.
  size_t refusalsLogged = 0;
  size_t refusalsNotLogged = 0;
  kj::Maybe<kj::TimePoint> refusalWindowEnd;

  LoggedTaskErrors errorHandler;
  kj::TaskSet tasks;

  class Connection;

  void handshake(kj::AuthenticatedStream stream);
  kj::Promise<void> serve(kj::AuthenticatedStream secured, kj::String peer);
  // Sends the client an Abort with "limit: <reason>" (the RPC system reports it as the error of
  // its calls), then closes the connection.
  kj::Promise<void> refuse(kj::Own<kj::AsyncIoStream> stream, kj::StringPtr reason);
  // Resolves once the connection of `caller` has been idle for limits.idleTimeout.
  kj::Promise<void> whenIdle(Caller& caller, uint64_t lastActivity);
  void addHandshake(kj::Own<PendingHandshake> handshake, kj::StringPtr host);
  // Forgets a handshake (cancelling it if it is still under way).
  void removeHandshake(uint64_t id);
  // Cancels the oldest pending handshake of `host`, to make room.
  void evictOldestFrom(PendingHost& host, kj::StringPtr why);
  // After a flood of handshakes has drained: each kept TLS state of its own, which the allocator
  // holds on to (about 130 MiB per 1,024), so runnerd gives it back to the system.
  void releaseMemoryAfterFlood();
  void moveToBucket(PendingHost& host, size_t from, size_t to);
  // Logs a refusal, or counts it when this window has logged enough.
  template <typename... Params>
  void logRefusal(Params&&... params) {
    if (refusalAllowed()) log(kj::fwd<Params>(params)...);
  }
  bool refusalAllowed();
  bool isAdmin(kj::StringPtr user) const;
};

}  // namespace runner

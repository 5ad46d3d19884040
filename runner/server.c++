#include "runner/server.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/debug.h>
#include <malloc.h>

#include "runner/backpressure-stream.h"
#include "runner/metered-network.h"
#include "runner/user-error.h"

namespace runner {

class Server::Connection {
 public:
  Connection(Server& server, kj::Own<kj::AsyncIoStream> stream, kj::Own<Caller> caller,
             api::JobManager::Client bootstrap)
      : server(server),
        caller(kj::mv(caller)),
        stream(kj::heap<BackpressureStream>(kj::mv(stream),
                                            [&caller = *this->caller]() { caller.recheckQueue(); })),
        network(*this->stream, capnp::rpc::twoparty::Side::SERVER, receiveOptions()),
        metered(network, server.timer, server.limits.unfinished,
                this->caller->usage->unfinishedBytes,
                [&server, &caller = *this->caller](kj::StringPtr reason) {
                  server.logRefusal("closed connection user=", caller.user, " peer=", caller.peer,
                                    ": ", reason);
                }),
        rpcSystem(capnp::makeRpcServer(metered, kj::mv(bootstrap))) {
    rpcSystem.setFlowLimit(CONNECTION_FLOW_LIMIT_WORDS);
    ++server.connections;
    ++this->caller->usage->connections;
    this->caller->queuedBytes = [this]() { return network.getCurrentQueueSize(); };
  }
  ~Connection() noexcept(false) {
    caller->queuedBytes = []() -> size_t { return 0; };
    caller->written.fire();
    --server.connections;
    if (--caller->usage->connections == 0) server.users.erase(caller->user);
  }
  KJ_DISALLOW_COPY(Connection);

  kj::Promise<void> onDisconnect() { return network.onDisconnect(); }
  // Resolves when the connection is to be dropped for the answers its client left unfinished.
  kj::Promise<void> whenClosed() { return metered.whenClosed(); }

  static capnp::ReaderOptions receiveOptions() {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = MAX_REQUEST_WORDS;
    return options;
  }

 private:
  Server& server;
  kj::Own<Caller> caller;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  MeteredNetwork metered;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;
};

namespace {
constexpr kj::StringPtr CONNECTION_REFUSAL_NAMES[] = {
    "too_many_connections"_kj, "short_of_descriptors"_kj, "too_many_for_user"_kj, "no_user"_kj};
static_assert(kj::size(CONNECTION_REFUSAL_NAMES) == CONNECTION_REFUSALS, "a name for each");
}  // namespace

kj::StringPtr refusalName(ConnectionRefusal refusal) {
  return CONNECTION_REFUSAL_NAMES[static_cast<uint>(refusal)];
}

Server::Server(JobTable& table, tls::ServerTls& tls, kj::Timer& timer, EventLog& log,
               kj::Array<kj::String> admins, ServerLimits limits)
    : table(table),
      tls(&tls),
      timer(timer),
      log(log),
      admins(kj::mv(admins)),
      limits(kj::mv(limits)),
      errorHandler(log, "connection error"),
      tasks(errorHandler) {}

Server::~Server() noexcept(false) {
  // Unlinked first: a list must be empty when it goes.
  kj::Vector<uint64_t> ids;
  for (auto& entry : pending) ids.add(entry.key);
  for (auto id : ids) removeHandshake(id);
}

void Server::reload(tls::ServerTls& newTls, kj::Array<kj::String> newAdmins) {
  tls = &newTls;
  admins = kj::mv(newAdmins);
}

bool Server::isAdmin(kj::StringPtr user) const {
  for (auto& admin : admins) {
    if (admin == user) return true;
  }
  return false;
}

kj::Promise<void> Server::listen(kj::ConnectionReceiver& receiver) {
  // evalNow: accept() may fail at once rather than through the promise.
  return kj::evalNow([&receiver]() { return receiver.acceptAuthenticated(); })
      .then(
          [this, &receiver](kj::AuthenticatedStream stream) {
            ++counted.accepted;
            handshake(kj::mv(stream));
            return listen(receiver);
          },
          [this, &receiver](kj::Exception&& e) {
            // Out of descriptors or buffers: the connections being served may free some, so the
            // server keeps going and tries again shortly.
            log("accept failed, retrying in ", ACCEPT_RETRY_DELAY, ": ", e.getDescription());
            return timer.afterDelay(ACCEPT_RETRY_DELAY).then([this, &receiver]() {
              return listen(receiver);
            });
          });
}

void Server::handshake(kj::AuthenticatedStream stream) {
  kj::String peer = kj::str("unknown");
  KJ_IF_MAYBE (network,
               kj::dynamicDowncastIfAvailable<kj::NetworkPeerIdentity>(*stream.peerIdentity)) {
    peer = network->getAddress().toString();
  }
  if (connections >= limits.connections) {
    ++counted.connectionsRefused[uint(ConnectionRefusal::TOO_MANY_CONNECTIONS)];
    logRefusal("refused connection peer=", peer, ": too many connections (limit ",
               limits.connections, ")");
    return;
  }
  KJ_IF_MAYBE (gauge, kj::Maybe<DescriptorGauge&>(limits.perConnection.descriptors)) {
    if (gauge->nearlyExhausted()) {
      if (pending.size() == 0) {
        ++counted.connectionsRefused[uint(ConnectionRefusal::SHORT_OF_DESCRIPTORS)];
        logRefusal("refused connection peer=", peer, ": runnerd is short of descriptors (",
                   gauge->inUse(), " of ", gauge->limit, " open)");
        return;
      }
      // Handshakes in progress give way rather than the newcomer, so that silent connections
      // cannot hold the last descriptors against clients that would sign in: the oldest of
      // the address with the most goes.
      while (fullestBucket > 0 && buckets[fullestBucket].empty()) --fullestBucket;
      KJ_ASSERT(fullestBucket > 0, "pending handshakes without an address");
      evictOldestFrom(buckets[fullestBucket].front(),
                      "runnerd is short of descriptors: the oldest handshake in progress of the "
                      "address with the most gives way to a new connection");
    }
    gauge->taking(1);
  }
  auto host = kj::str(peer.slice(0, peer.findLast(':').orDefault(peer.size())));
  KJ_IF_MAYBE (own, pendingHosts.find(host)) {
    if ((*own)->handshakes.size() >= MAX_PENDING_HANDSHAKES_PER_ADDRESS) {
      evictOldestFrom(**own, kj::str("the oldest of ", MAX_PENDING_HANDSHAKES_PER_ADDRESS,
                                     " handshakes in progress from its address"));
    }
  }
  if (pending.size() >= MAX_PENDING_HANDSHAKES) {
    while (fullestBucket > 0 && buckets[fullestBucket].empty()) --fullestBucket;
    KJ_ASSERT(fullestBucket > 0, "pending handshakes without an address");
    evictOldestFrom(buckets[fullestBucket].front(),
                    kj::str("the oldest of ", MAX_PENDING_HANDSHAKES,
                            " handshakes in progress in all, from the address with the most"));
  }

  auto entry = kj::heap<PendingHandshake>();
  auto& handshake = *entry;
  handshake.id = nextHandshakeId++;
  handshake.peer = kj::mv(peer);
  handshake.task =
      tls->wrapServer(kj::mv(stream))
          .then(
              [this, &handshake](kj::AuthenticatedStream secured) {
                tasks.add(serve(kj::mv(secured), kj::mv(handshake.peer)));
              },
              [this, &handshake](kj::Exception&& e) {
                auto kind = tls::classifyRefusal(e);
                ++counted.handshakesRefused[uint(kind)];
                // A TCP probe (connect, close) is not a client: counted, not logged.
                if (kind == tls::HandshakeRefusal::SILENT) return;
                logRefusal("refused TLS handshake peer=", handshake.peer, ": ",
                           e.getDescription());
              })
          .then([this, id = handshake.id]() {
            // Not from within its own continuation: the promise is the handshake's.
            tasks.add(kj::evalLater([this, id]() { removeHandshake(id); }));
          })
          .eagerlyEvaluate(nullptr);
  addHandshake(kj::mv(entry), host);
}

void Server::addHandshake(kj::Own<PendingHandshake> handshake, kj::StringPtr host) {
  if (buckets == nullptr) {
    buckets = kj::heapArray<kj::List<PendingHost, &PendingHost::bucketLink>>(
        MAX_PENDING_HANDSHAKES_PER_ADDRESS + 1);
  }
  PendingHost* entry;
  KJ_IF_MAYBE (own, pendingHosts.find(host)) {
    entry = *own;
  } else {
    auto made = kj::heap<PendingHost>();
    made->host = kj::str(host);
    entry = made;
    kj::StringPtr key = made->host;
    pendingHosts.insert(key, kj::mv(made));
  }
  size_t count = entry->handshakes.size();
  handshake->host = entry;
  entry->handshakes.add(*handshake);
  moveToBucket(*entry, count, count + 1);
  auto id = handshake->id;
  pending.insert(id, kj::mv(handshake));
  ++handshakesSinceTrim;
}

void Server::removeHandshake(uint64_t id) {
  KJ_IF_MAYBE (found, pending.find(id)) {
    auto& handshake = **found;
    auto& host = *handshake.host;
    size_t count = host.handshakes.size();
    host.handshakes.remove(handshake);
    moveToBucket(host, count, count - 1);
    if (host.handshakes.empty()) pendingHosts.erase(host.host);
    // Cancels the handshake if it is still under way, closing its connection.
    pending.erase(id);
    if (pending.size() == 0) releaseMemoryAfterFlood();
  }
}

void Server::releaseMemoryAfterFlood() {
  if (handshakesSinceTrim < TRIM_AFTER_HANDSHAKES || trimScheduled) return;
  trimScheduled = true;
  // Replaces the previous one, which has run (never from within it).
  trim = timer.afterDelay(TRIM_DELAY)
             .then([this]() {
               trimScheduled = false;
               if (pending.size() > 0) return;  // another flood: later
               handshakesSinceTrim = 0;
               malloc_trim(0);
             })
             .eagerlyEvaluate(nullptr);
}

void Server::moveToBucket(PendingHost& host, size_t from, size_t to) {
  if (from > 0) buckets[from].remove(host);
  if (to > 0) buckets[to].add(host);
  if (to > fullestBucket) fullestBucket = to;
}

void Server::evictOldestFrom(PendingHost& host, kj::StringPtr why) {
  auto& oldest = host.handshakes.front();
  ++counted.handshakesRefused[ServerMetrics::EVICTED_HANDSHAKE];
  logRefusal("dropped TLS handshake peer=", oldest.peer, ": ", why);
  removeHandshake(oldest.id);
}

bool Server::refusalAllowed() {
  auto now = timer.now();
  bool inWindow = false;
  KJ_IF_MAYBE (end, refusalWindowEnd) {
    inWindow = now < *end;
  }
  if (!inWindow) {
    refusalWindowEnd = now + REFUSAL_LOG_WINDOW;
    refusalsLogged = 0;
  }
  if (refusalsLogged < REFUSALS_LOGGED_PER_WINDOW) {
    ++refusalsLogged;
    return true;
  }
  if (refusalsNotLogged++ == 0) {
    // The first one not logged: a line at the end of the window says how many there were.
    tasks.add(timer.atTime(KJ_ASSERT_NONNULL(refusalWindowEnd)).then([this]() {
      log(refusalsNotLogged, " more refused or dropped connections in the last ",
          REFUSAL_LOG_WINDOW, " were not logged one by one (at most ", REFUSALS_LOGGED_PER_WINDOW,
          " per ", REFUSAL_LOG_WINDOW, ")");
      refusalsNotLogged = 0;
    }));
  }
  return false;
}

kj::Promise<void> Server::serve(kj::AuthenticatedStream secured, kj::String peer) {
  kj::String user;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { user = tls::ServerTls::peerCommonName(*secured.peerIdentity); })) {
    ++counted.connectionsRefused[uint(ConnectionRefusal::NO_USER)];
    logRefusal("refused connection peer=", peer, ": ", e->getDescription());
    return kj::READY_NOW;
  }
  bool admin = isAdmin(user);
  auto& usage = users.findOrCreate(user, [&]() {
    return kj::HashMap<kj::String, kj::Own<UserUsage>>::Entry{kj::str(user),
                                                               kj::refcounted<UserUsage>()};
  });
  if (usage->connections >= limits.connectionsPerUser) {
    ++counted.connectionsRefused[uint(ConnectionRefusal::TOO_MANY_FOR_USER)];
    // Refused before any RPC is served: the client reads why in an Abort, its first message.
    auto reason = kj::str("too many connections for this user (limit ",
                          limits.connectionsPerUser, "); close one and try again");
    logRefusal("refused connection user=", user, " peer=", peer, ": ", reason);
    if (usage->connections == 0) users.erase(user);
    return refuse(kj::mv(secured.stream), reason);
  }
  auto caller = kj::refcounted<Caller>(kj::str(user), admin, kj::mv(peer), kj::addRef(*usage),
                                           limits.perConnection);
  auto& callerRef = *caller;
  auto bootstrap = newJobManager(table, log, kj::addRef(*caller));
  auto connection =
      kj::heap<Connection>(*this, kj::mv(secured.stream), kj::mv(caller), kj::mv(bootstrap));
  auto disconnected = connection->onDisconnect();
  auto closed = connection->whenClosed();
  return disconnected.exclusiveJoin(whenIdle(callerRef, callerRef.activity))
      .exclusiveJoin(kj::mv(closed))
      .attach(kj::mv(connection));
}

kj::Promise<void> Server::refuse(kj::Own<kj::AsyncIoStream> stream, kj::StringPtr reason) {
  capnp::MallocMessageBuilder message(64);
  auto abort = message.initRoot<capnp::rpc::Message>().initAbort();
  // A limit, in the words every failure a client reads has (runner/user-error.h).
  abort.setReason(userError(ErrorKind::LIMIT, reason).getDescription());
  abort.setType(capnp::rpc::Exception::Type::OVERLOADED);
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  // A client that does not read has REFUSAL_WRITE_TIMEOUT; the connection closes either way.
  return stream->write(bytes.begin(), bytes.size())
      .attach(kj::mv(words))
      .exclusiveJoin(timer.afterDelay(REFUSAL_WRITE_TIMEOUT))
      .then([&stream = *stream]() { stream.shutdownWrite(); })
      .attach(kj::mv(stream))
      .catch_([](kj::Exception&&) {});
}

kj::Promise<void> Server::whenIdle(Caller& caller, uint64_t lastActivity) {
  return timer.afterDelay(limits.idleTimeout).then([this, &caller, lastActivity]() -> kj::Promise<void> {
    if (caller.isIdleSince(lastActivity)) {
      log("closed idle connection user=", caller.user, " peer=", caller.peer, ": no call for ",
          limits.idleTimeout);
      return kj::READY_NOW;
    }
    return whenIdle(caller, caller.activity);
  });
}

}  // namespace runner

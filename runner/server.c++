#include "runner/server.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include "runner/backpressure-stream.h"

namespace runner {

class Server::Connection {
 public:
  Connection(Server& server, kj::Own<kj::AsyncIoStream> stream, kj::Own<Caller> caller,
             api::JobManager::Client bootstrap)
      : server(server),
        caller(kj::mv(caller)),
        stream(kj::heap<BackpressureStream>(kj::mv(stream))),
        network(*this->stream, capnp::rpc::twoparty::Side::SERVER, receiveOptions()),
        rpcSystem(capnp::makeRpcServer(network, kj::mv(bootstrap))) {
    rpcSystem.setFlowLimit(CONNECTION_FLOW_LIMIT_WORDS);
    ++server.connections;
    ++this->caller->usage->connections;
  }
  ~Connection() noexcept(false) {
    --server.connections;
    if (--caller->usage->connections == 0) server.users.erase(caller->user);
  }
  KJ_DISALLOW_COPY(Connection);

  kj::Promise<void> onDisconnect() { return network.onDisconnect(); }

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
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;
};

Server::Server(JobTable& table, tls::ServerTls& tls, kj::Timer& timer, EventLog& log,
               kj::Array<kj::String> admins, kj::Duration idleTimeout)
    : table(table),
      tls(tls),
      timer(timer),
      log(log),
      admins(kj::mv(admins)),
      idleTimeout(idleTimeout),
      errorHandler(log, "connection error"),
      tasks(errorHandler) {}

Server::~Server() noexcept(false) {}

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
  if (connections >= MAX_CONNECTIONS) {
    log("refused connection peer=", peer, ": too many connections (limit ", MAX_CONNECTIONS, ")");
    return;
  }
  auto host = kj::str(peer.slice(0, peer.findLast(':').orDefault(peer.size())));
  sweepHandshakes();
  auto pendingFrom = [this](kj::StringPtr from) {
    size_t count = 0;
    for (auto& entry : pending) count += entry->host == from;
    return count;
  };
  if (pendingFrom(host) >= MAX_PENDING_HANDSHAKES_PER_ADDRESS) {
    evictOldestFrom(host, kj::str(MAX_PENDING_HANDSHAKES_PER_ADDRESS, " from its address"));
  } else if (pending.size() >= MAX_PENDING_HANDSHAKES) {
    kj::StringPtr busiest = pending[0]->host;
    for (auto& entry : pending) {
      if (pendingFrom(entry->host) > pendingFrom(busiest)) busiest = entry->host;
    }
    evictOldestFrom(kj::str(busiest), kj::str(MAX_PENDING_HANDSHAKES, " in all"));
  }

  auto entry = kj::heap<PendingHandshake>();
  auto& handshake = *entry;
  handshake.peer = kj::mv(peer);
  handshake.host = kj::mv(host);
  handshake.task =
      tls.wrapServer(kj::mv(stream))
          .then(
              [this, &handshake](kj::AuthenticatedStream secured) {
                handshake.done = true;
                tasks.add(serve(kj::mv(secured), kj::mv(handshake.peer)));
              },
              [this, &handshake](kj::Exception&& e) {
                handshake.done = true;
                log("refused TLS handshake peer=", handshake.peer, ": ", e.getDescription());
              })
          .then([this]() { tasks.add(kj::evalLater([this]() { sweepHandshakes(); })); })
          .eagerlyEvaluate(nullptr);
  pending.add(kj::mv(entry));
}

void Server::evictOldestFrom(kj::StringPtr host, kj::StringPtr why) {
  kj::Vector<kj::Own<PendingHandshake>> rest(pending.size());
  bool evicted = false;
  for (auto& entry : pending) {
    if (!evicted && entry->host == host) {
      log("dropped TLS handshake peer=", entry->peer, ": the oldest of ", why,
          " handshakes in progress");
      evicted = true;
    } else {
      rest.add(kj::mv(entry));
    }
  }
  // The evicted handshake is cancelled (and its connection closed) as `pending` is replaced.
  pending = kj::mv(rest);
}

void Server::sweepHandshakes() {
  kj::Vector<kj::Own<PendingHandshake>> live(pending.size());
  for (auto& entry : pending) {
    if (!entry->done) live.add(kj::mv(entry));
  }
  pending = kj::mv(live);
}

kj::Promise<void> Server::serve(kj::AuthenticatedStream secured, kj::String peer) {
  kj::String user;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { user = tls::ServerTls::peerCommonName(*secured.peerIdentity); })) {
    log("refused connection peer=", peer, ": ", e->getDescription());
    return kj::READY_NOW;
  }
  bool admin = isAdmin(user);
  auto& usage = users.findOrCreate(user, [&]() {
    return kj::HashMap<kj::String, kj::Own<UserUsage>>::Entry{kj::str(user),
                                                               kj::refcounted<UserUsage>()};
  });
  if (usage->connections >= MAX_CONNECTIONS_PER_USER) {
    // Refused before any RPC: the client sees its connection closed.
    log("refused connection user=", user, " peer=", peer, ": too many connections for this user (limit ",
        MAX_CONNECTIONS_PER_USER, ")");
    if (usage->connections == 0) users.erase(user);
    return kj::READY_NOW;
  }
  auto caller = kj::refcounted<Caller>(kj::str(user), admin, kj::mv(peer), kj::addRef(*usage));
  auto& callerRef = *caller;
  auto bootstrap = newJobManager(table, log, kj::addRef(*caller));
  auto connection =
      kj::heap<Connection>(*this, kj::mv(secured.stream), kj::mv(caller), kj::mv(bootstrap));
  auto disconnected = connection->onDisconnect();
  return disconnected.exclusiveJoin(whenIdle(callerRef, callerRef.activity))
      .attach(kj::mv(connection));
}

kj::Promise<void> Server::whenIdle(Caller& caller, uint64_t lastActivity) {
  return timer.afterDelay(idleTimeout).then([this, &caller, lastActivity]() -> kj::Promise<void> {
    if (caller.isIdleSince(lastActivity)) {
      log("closed idle connection user=", caller.user, " peer=", caller.peer, ": no call for ",
          idleTimeout);
      return kj::READY_NOW;
    }
    return whenIdle(caller, caller.activity);
  });
}

}  // namespace runner

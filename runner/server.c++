#include "runner/server.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include "runner/rpc-service.h"

namespace runner {

class Server::Connection {
 public:
  Connection(Server& server, kj::Own<kj::AsyncIoStream> stream, api::JobManager::Client bootstrap)
      : server(server),
        stream(kj::mv(stream)),
        network(*this->stream, capnp::rpc::twoparty::Side::SERVER, receiveOptions()),
        rpcSystem(capnp::makeRpcServer(network, kj::mv(bootstrap))) {
    ++server.connections;
  }
  ~Connection() noexcept(false) { --server.connections; }
  KJ_DISALLOW_COPY(Connection);

  kj::Promise<void> onDisconnect() { return network.onDisconnect(); }

  static capnp::ReaderOptions receiveOptions() {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = MAX_REQUEST_WORDS;
    return options;
  }

 private:
  Server& server;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;
};

Server::Server(JobTable& table, tls::ServerTls& tls, kj::Timer& timer, EventLog& log,
               kj::Array<kj::String> admins)
    : table(table),
      tls(tls),
      timer(timer),
      log(log),
      admins(kj::mv(admins)),
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
            tasks.add(handshake(kj::mv(stream)));
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

kj::Promise<void> Server::handshake(kj::AuthenticatedStream stream) {
  kj::String peer = kj::str("unknown");
  KJ_IF_MAYBE (network,
               kj::dynamicDowncastIfAvailable<kj::NetworkPeerIdentity>(*stream.peerIdentity)) {
    peer = network->getAddress().toString();
  }
  if (pendingHandshakes >= MAX_PENDING_HANDSHAKES) {
    log("refused connection peer=", peer, ": too many TLS handshakes in progress (limit ",
        MAX_PENDING_HANDSHAKES, ")");
    return kj::READY_NOW;
  }
  if (connections >= MAX_CONNECTIONS) {
    log("refused connection peer=", peer, ": too many connections (limit ", MAX_CONNECTIONS, ")");
    return kj::READY_NOW;
  }
  ++pendingHandshakes;
  return tls.wrapServer(kj::mv(stream))
      .then(
          [this,
           peer = kj::str(peer)](kj::AuthenticatedStream secured) mutable -> kj::Promise<void> {
            --pendingHandshakes;
            kj::String user;
            KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                           user = tls::ServerTls::peerCommonName(*secured.peerIdentity);
                         })) {
              log("refused connection peer=", peer, ": ", e->getDescription());
              return kj::READY_NOW;
            }
            bool admin = isAdmin(user);
            auto caller = kj::refcounted<Caller>(kj::str(user), admin, kj::mv(peer));
            auto connection = kj::heap<Connection>(*this, kj::mv(secured.stream),
                                                   newJobManager(table, log, kj::mv(caller)));
            auto disconnected = connection->onDisconnect();
            return disconnected.attach(kj::mv(connection));
          },
          [this, peer = kj::str(peer)](kj::Exception&& e) {
            --pendingHandshakes;
            log("refused TLS handshake peer=", peer, ": ", e.getDescription());
          });
}

}  // namespace runner

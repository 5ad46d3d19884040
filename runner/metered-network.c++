#include "runner/metered-network.h"

#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

namespace runner {

namespace {

// The kind of an RPC message, or nullptr for one that cannot be read (the RPC system fails it with
// its own error).
template <typename Body>
kj::Maybe<capnp::rpc::Message::Which> kindOf(Body body) {
  capnp::rpc::Message::Which which;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { which = body.template getAs<capnp::rpc::Message>().which(); })) {
    return nullptr;
  }
  return which;
}

}  // namespace

// An outgoing message that counts itself when it is a Return.
class MeteredNetwork::MeteredMessage final : public capnp::OutgoingRpcMessage {
 public:
  MeteredMessage(MeteredNetwork& network, kj::Own<capnp::OutgoingRpcMessage> inner)
      : network(network), inner(kj::mv(inner)) {}

  capnp::AnyPointer::Builder getBody() override { return inner->getBody(); }
  void setFds(kj::Array<int> fds) override { inner->setFds(kj::mv(fds)); }
  size_t sizeInWords() override { return inner->sizeInWords(); }
  void send() override {
    KJ_IF_MAYBE (which, kindOf(inner->getBody().asReader())) {
      if (*which == capnp::rpc::Message::RETURN) ++network.answered;
    }
    inner->send();
  }

 private:
  MeteredNetwork& network;
  kj::Own<capnp::OutgoingRpcMessage> inner;
};

class MeteredNetwork::MeteredConnection final : public capnp::TwoPartyVatNetworkBase::Connection {
 public:
  MeteredConnection(MeteredNetwork& network,
                    kj::Own<capnp::TwoPartyVatNetworkBase::Connection> inner)
      : network(network), inner(kj::mv(inner)) {}

  kj::Own<capnp::RpcFlowController> newStream() override { return inner->newStream(); }
  capnp::rpc::twoparty::VatId::Reader getPeerVatId() override { return inner->getPeerVatId(); }
  kj::Own<capnp::OutgoingRpcMessage> newOutgoingMessage(kj::uint firstSegmentWordSize) override {
    return kj::heap<MeteredMessage>(network, inner->newOutgoingMessage(firstSegmentWordSize));
  }
  kj::Promise<void> shutdown() override { return inner->shutdown(); }

  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> receiveIncomingMessage() override {
    return inner->receiveIncomingMessage().then(
        [this](kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>&& message) {
          KJ_IF_MAYBE (m, message) {
            count(**m);
          }
          return kj::mv(message);
        });
  }

 private:
  MeteredNetwork& network;
  kj::Own<capnp::TwoPartyVatNetworkBase::Connection> inner;

  void count(capnp::IncomingRpcMessage& message) {
    KJ_IF_MAYBE (which, kindOf(message.getBody())) {
      if (*which == capnp::rpc::Message::FINISH) ++network.finished;
    }
    if (network.unfinished() <= int64_t(network.maxUnfinished)) {
      network.overSince = nullptr;
      return;
    }
    auto now = kj::systemCoarseMonotonicClock().now();
    KJ_IF_MAYBE (since, network.overSince) {
      if (now - *since < OVER_LIMIT_GRACE) return;
    } else {
      network.overSince = now;
      return;
    }
    {
      auto reason = kj::str("the client left more than ", network.maxUnfinished,
                            " answered calls unfinished on one connection; closing it");
      network.refused(reason);
      kj::throwFatalException(
          kj::Exception(kj::Exception::Type::OVERLOADED, __FILE__, __LINE__, kj::mv(reason)));
    }
  }
};

kj::Promise<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> MeteredNetwork::accept() {
  return inner.accept().then(
      [this](kj::Own<capnp::TwoPartyVatNetworkBase::Connection>&& connection)
          -> kj::Own<capnp::TwoPartyVatNetworkBase::Connection> {
        return kj::heap<MeteredConnection>(*this, kj::mv(connection));
      });
}

}  // namespace runner

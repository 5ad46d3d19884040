#include "runner/metered-network.h"

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

namespace runner {

namespace {

// The message, or nullptr for one that cannot be read (the RPC system fails it with its own
// error).
template <typename Body>
kj::Maybe<capnp::rpc::Message::Reader> messageOf(Body body) {
  kj::Maybe<capnp::rpc::Message::Reader> message;
  kj::runCatchingExceptions([&]() {
    auto read = body.template getAs<capnp::rpc::Message>();
    read.which();
    message = read;
  });
  return message;
}

// The first segment of a message whose size the RPC system does not know ahead (1 KiB).
constexpr kj::uint SMALL_FIRST_SEGMENT_WORDS = 128;
// What the RPC system keeps for an answer besides its message (its table entry), roughly.
constexpr size_t ANSWER_OVERHEAD_BYTES = 256;
// ... and for one whose results hold capabilities: the pipeline kept for them and their entries
// in the export table (measured: about 2 KiB for a `get`).
constexpr size_t PIPELINE_OVERHEAD_BYTES = 2048;

kj::String mib(size_t bytes) {
  if (bytes % (1024 * 1024) == 0) return kj::str(bytes / (1024 * 1024), " MiB");
  return kj::str(bytes / 1024, " KiB");
}

}  // namespace

// An outgoing message that counts itself when it is a Return.
class MeteredNetwork::MeteredMessage final : public capnp::OutgoingRpcMessage {
 public:
  MeteredMessage(MeteredNetwork& network, kj::Own<capnp::OutgoingRpcMessage> inner,
                 kj::uint firstSegmentWords)
      : network(network), inner(kj::mv(inner)), firstSegmentWords(firstSegmentWords) {}

  capnp::AnyPointer::Builder getBody() override { return inner->getBody(); }
  void setFds(kj::Array<int> fds) override { inner->setFds(kj::mv(fds)); }
  size_t sizeInWords() override { return inner->sizeInWords(); }
  void send() override {
    KJ_IF_MAYBE (message, messageOf(inner->getBody().asReader())) {
      if (message->isReturn()) {
        auto ret = message->getReturn();
        // An answer whose results hold no capability keeps only its table entry once sent; one
        // with capabilities (a pipeline may still call them) or an exception keeps its message,
        // of at least its first segment.
        size_t bytes = ANSWER_OVERHEAD_BYTES;
        if (!ret.isResults() || ret.getResults().getCapTable().size() > 0) {
          bytes += kj::max(inner->sizeInWords(), size_t(firstSegmentWords)) * sizeof(capnp::word);
        }
        if (ret.isResults() && ret.getResults().getCapTable().size() > 0) {
          bytes += PIPELINE_OVERHEAD_BYTES;
        }
        network.answered(ret.getAnswerId(), bytes);
      }
    }
    inner->send();
  }

 private:
  MeteredNetwork& network;
  kj::Own<capnp::OutgoingRpcMessage> inner;
  kj::uint firstSegmentWords;
};

class MeteredNetwork::MeteredConnection final : public capnp::TwoPartyVatNetworkBase::Connection {
 public:
  MeteredConnection(MeteredNetwork& network,
                    kj::Own<capnp::TwoPartyVatNetworkBase::Connection> inner)
      : network(network), inner(kj::mv(inner)) {}

  kj::Own<capnp::RpcFlowController> newStream() override { return inner->newStream(); }
  capnp::rpc::twoparty::VatId::Reader getPeerVatId() override { return inner->getPeerVatId(); }
  kj::Own<capnp::OutgoingRpcMessage> newOutgoingMessage(kj::uint firstSegmentWordSize) override {
    // A message whose size is not known ahead (a call's results, most often a few words) starts
    // small rather than at capnp's 8 KiB, which an unfinished answer would hold.
    if (firstSegmentWordSize == 0) firstSegmentWordSize = SMALL_FIRST_SEGMENT_WORDS;
    return kj::heap<MeteredMessage>(network, inner->newOutgoingMessage(firstSegmentWordSize),
                                    firstSegmentWordSize);
  }
  kj::Promise<void> shutdown() override { return inner->shutdown(); }

  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> receiveIncomingMessage() override {
    // The previous message has been handled: a Return is sent for its call, if ever, by now.
    network.finishedUnanswered = nullptr;
    // Fails with the reason once the connection is to end for its unfinished answers.
    auto refused = network.closed.addBranch().then(
        []() -> kj::Maybe<kj::Own<capnp::IncomingRpcMessage>> { return nullptr; });
    return inner->receiveIncomingMessage()
        .then([this](kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>&& message) {
          KJ_IF_MAYBE (m, message) {
            KJ_IF_MAYBE (read, messageOf((*m)->getBody())) {
              if (read->isFinish()) network.finished(read->getFinish().getQuestionId());
              if (read->isCall() && !read->getCall().getSendResultsTo().isCaller()) {
                // Results kept for a three-party hand-off that never comes: the RPC system
                // would hold them, answered but never returned, outside every bound here.
                auto reason = kj::str(
                    "the client asked for a call's results to be sent elsewhere than to itself, "
                    "which runnerd does not support; closing the connection");
                network.close(ErrorKind::INVALID, kj::str(reason));
                throwUserError(ErrorKind::INVALID, reason);
              }
            }
          }
          return kj::mv(message);
        })
        .exclusiveJoin(kj::mv(refused));
  }

 private:
  MeteredNetwork& network;
  kj::Own<capnp::TwoPartyVatNetworkBase::Connection> inner;
};

MeteredNetwork::MeteredNetwork(capnp::TwoPartyVatNetwork& inner, kj::Timer& timer,
                               UnfinishedLimits limits, size_t& userBytes,
                               kj::Function<void(kj::StringPtr)> refused)
    : inner(inner),
      timer(timer),
      limits(limits),
      userBytes(userBytes),
      refused(kj::mv(refused)),
      closed(nullptr),
      closedDelay(nullptr) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  closeFulfiller = kj::mv(paf.fulfiller);
  closed = paf.promise.fork();
  closedDelay = closed.addBranch()
                    .then([]() -> kj::Promise<void> { return kj::READY_NOW; },
                          [this](kj::Exception&&) -> kj::Promise<void> {
                            return this->timer.afterDelay(CLOSE_DELAY);
                          })
                    .fork();
}

MeteredNetwork::~MeteredNetwork() noexcept(false) { userBytes -= heldBytes; }

void MeteredNetwork::answered(uint32_t id, size_t bytes) {
  KJ_IF_MAYBE (early, finishedUnanswered) {
    if (*early == id) {
      finishedUnanswered = nullptr;
      return;
    }
  }
  KJ_IF_MAYBE (previous, held.find(id)) {
    // Not expected (an id is reused only once finished); counted once all the same.
    heldBytes -= *previous;
    userBytes -= *previous;
    *previous = bytes;
  } else {
    held.insert(id, bytes);
  }
  heldBytes += bytes;
  userBytes += bytes;
  check();
}

void MeteredNetwork::finished(uint32_t id) {
  KJ_IF_MAYBE (bytes, held.find(id)) {
    heldBytes -= *bytes;
    userBytes -= *bytes;
    held.erase(id);
  } else {
    // A call cancelled before its answer.
    finishedUnanswered = id;
  }
  check();
}

void MeteredNetwork::check() {
  if (closing) return;
  if (heldBytes > limits.hardBytes) {
    close(ErrorKind::LIMIT, kj::str("the client left more than ", mib(limits.hardBytes),
                                    " of answers unfinished on one connection; closing it"));
    return;
  }
  if (userBytes > limits.userBytes) {
    close(ErrorKind::LIMIT,
          kj::str("the client's user left more than ", mib(limits.userBytes),
                  " of answered calls unfinished over its connections; closing this one"));
    return;
  }
  if (held.size() <= limits.answers && heldBytes <= limits.bytes) {
    grace = nullptr;
    return;
  }
  if (grace != nullptr) return;
  grace =
      timer.afterDelay(OVER_LIMIT_GRACE)
          .then([this]() {
            close(ErrorKind::LIMIT,
                  kj::str("the client left more than ",
                          held.size() > limits.answers ? kj::str(limits.answers, " answered calls")
                                                       : kj::str(mib(limits.bytes), " of answers"),
                          " unfinished on one connection for ", OVER_LIMIT_GRACE, "; closing it"));
          })
          .eagerlyEvaluate(nullptr);
}

void MeteredNetwork::close(ErrorKind kind, kj::String reason) {
  if (closing) return;
  closing = true;
  refused(reason);
  // The client reads it as the reason its connection was closed.
  closeFulfiller->reject(userError(kind, reason));
}

kj::Promise<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> MeteredNetwork::accept() {
  return inner.accept().then(
      [this](kj::Own<capnp::TwoPartyVatNetworkBase::Connection>&& connection)
          -> kj::Own<capnp::TwoPartyVatNetworkBase::Connection> {
        return kj::heap<MeteredConnection>(*this, kj::mv(connection));
      });
}

}  // namespace runner

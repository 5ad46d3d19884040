#pragma once
// MeteredNetwork: the server's end of one two-party RPC connection, counting the answers the
// server holds because the client has not finished them.
//
// Cap'n Proto keeps an answer (its whole results message) for every call until the client sends
// Finish for it (for an error, the exception too): a client that never finishes its calls makes
// the server hold ever more of them. This network reads the kind of each message on its way out
// (Return: one more answer held, of what it keeps: its table entry, and its message when the
// results hold capabilities) and in (Finish: that answer is let go), and ends the connection, with an error the client receives, when:
// - more than the soft bound (answers or bytes) has been held for OVER_LIMIT_GRACE on end: a
//   client that is only slow to send its Finishes after a burst of returns (a thousand waits on
//   jobs that ended together) catches up within it; the grace runs on a timer, so a client that
//   goes silent after its burst is closed all the same;
// - the hard bound (bytes) of the connection, or of its user over all of the user's connections, is
//   passed: at once.
// Calls not answered yet are bounded by the RPC system's flow limit.

#include <capnp/rpc-twoparty.h>
#include <kj/function.h>
#include <kj/map.h>
#include <kj/time.h>
#include <kj/timer.h>

#include "runner/user-error.h"

namespace runner {

constexpr kj::Duration OVER_LIMIT_GRACE = 1 * kj::SECONDS;
// After the connection was ended for its unfinished answers, how long the client has to take the
// error before the connection is cut.
constexpr kj::Duration CLOSE_DELAY = 1 * kj::SECONDS;

struct UnfinishedLimits {
  // Held longer than OVER_LIMIT_GRACE, the connection is closed.
  size_t answers = 8192;
  size_t bytes = 16 * 1024 * 1024;
  // Passed, the connection is closed at once.
  size_t hardBytes = 64 * 1024 * 1024;
  // What all the connections of one user may hold; the connection that passes it is closed.
  size_t userBytes = 128 * 1024 * 1024;
};

class MeteredNetwork final : public capnp::TwoPartyVatNetworkBase {
 public:
  // `userBytes` is the count of unfinished answer bytes over all the connections of this
  // connection's user, which this network adds to and takes from. `refused` is called, with the
  // reason, when the connection is ended.
  MeteredNetwork(capnp::TwoPartyVatNetwork& inner, kj::Timer& timer, UnfinishedLimits limits,
                 size_t& userBytes, kj::Function<void(kj::StringPtr)> refused);
  ~MeteredNetwork() noexcept(false);
  KJ_DISALLOW_COPY(MeteredNetwork);

  // Answers sent and not yet finished by the client, and the bytes their messages hold.
  size_t unfinished() const { return held.size(); }
  size_t unfinishedBytes() const { return heldBytes; }

  // Resolves CLOSE_DELAY after the connection was ended for its unfinished answers: the
  // connection is to be dropped then, whether or not the client took the error.
  kj::Promise<void> whenClosed() { return closedDelay.addBranch(); }

  kj::Maybe<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> connect(
      capnp::rpc::twoparty::VatId::Reader ref) override {
    return nullptr;
  }
  kj::Promise<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> accept() override;

 private:
  class MeteredConnection;
  class MeteredMessage;

  capnp::TwoPartyVatNetwork& inner;
  kj::Timer& timer;
  UnfinishedLimits limits;
  size_t& userBytes;
  kj::Function<void(kj::StringPtr)> refused;

  // Answer id → bytes of its message, for each answer sent and not finished.
  kj::HashMap<uint32_t, size_t> held;
  size_t heldBytes = 0;
  // The call of the last Finish received, when it had no answer: the RPC system cancels it and
  // sends no Return for it, unless the answer was on its way in the same turn (then it is let go
  // as it is sent). Forgotten at the next message, which the RPC system reads only once it has
  // handled the Finish.
  kj::Maybe<uint32_t> finishedUnanswered;

  // Runs out OVER_LIMIT_GRACE while over the soft bound.
  kj::Maybe<kj::Promise<void>> grace;
  bool closing = false;
  // Rejected with the reason once the connection is to end: the RPC system's pending receive
  // fails with it, and the client gets it in an Abort.
  kj::Own<kj::PromiseFulfiller<void>> closeFulfiller;
  kj::ForkedPromise<void> closed;
  kj::ForkedPromise<void> closedDelay;

  void answered(uint32_t id, size_t bytes);
  void finished(uint32_t id);
  void check();
  // Closes the connection; the client reads "<kind>: <reason>".
  void close(ErrorKind kind, kj::String reason);
};

}  // namespace runner

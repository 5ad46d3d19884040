#pragma once
// MeteredNetwork: the server's end of one two-party RPC connection, counting the calls the server
// has answered and the client has not finished.
//
// Cap'n Proto keeps an answer for every call until the client sends Finish for it (for an error,
// the exception too): a client that never finishes its calls makes the server hold ever more of
// them. This network reads the kind of each message on its way in (Finish) and out (Return) and
// ends the connection, with an error the client receives, once more than `maxUnfinished` answers
// have been held for OVER_LIMIT_GRACE: a client that is only slow to send its Finishes after a
// burst of returns (a thousand waits on jobs that ended together) catches up within it. (Calls
// not answered yet are bounded by the RPC system's flow limit.)

#include <capnp/rpc-twoparty.h>
#include <kj/function.h>
#include <kj/time.h>

namespace runner {

constexpr kj::Duration OVER_LIMIT_GRACE = 1 * kj::SECONDS;

class MeteredNetwork final : public capnp::TwoPartyVatNetworkBase {
 public:
  // `refused` is called, with the reason, when the connection is ended.
  MeteredNetwork(capnp::TwoPartyVatNetwork& inner, size_t maxUnfinished,
                 kj::Function<void(kj::StringPtr)> refused)
      : inner(inner), maxUnfinished(maxUnfinished), refused(kj::mv(refused)) {}
  KJ_DISALLOW_COPY(MeteredNetwork);

  // Answers sent and not yet finished by the client.
  int64_t unfinished() const { return answered - finished; }

  kj::Maybe<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> connect(
      capnp::rpc::twoparty::VatId::Reader ref) override {
    return nullptr;
  }
  kj::Promise<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> accept() override;

 private:
  class MeteredConnection;
  class MeteredMessage;

  capnp::TwoPartyVatNetwork& inner;
  size_t maxUnfinished;
  kj::Function<void(kj::StringPtr)> refused;
  // A Finish may come before its Return (a call the client cancelled), so the difference may
  // dip below zero for a moment.
  int64_t answered = 0;
  int64_t finished = 0;
  // Since when more than maxUnfinished answers are held.
  kj::Maybe<kj::TimePoint> overSince;
};

}  // namespace runner

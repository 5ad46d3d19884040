// MeteredNetwork under a real RPC system on both ends of a socket pair, with small bounds: what it
// counts for each kind of answer, and each way a connection is closed for answers its client
// never finishes.

#include "runner/metered-network.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "schema/runner.capnp.h"

namespace runner {
namespace {

class TestJob final : public api::Job::Server {};

// whoami answers without a capability; get answers with one.
class TestManager final : public api::JobManager::Server {
 public:
  kj::Promise<void> whoami(WhoamiContext context) override {
    context.getResults().setUser("alice");
    return kj::READY_NOW;
  }
  // Never answers: a call the client can only cancel.
  kj::Promise<void> list(ListContext context) override {
    context.allowCancellation();
    ++listsInProgress;
    return kj::Promise<void>(kj::NEVER_DONE).attach(kj::defer([this]() { --listsInProgress; }));
  }
  int listsInProgress = 0;

  kj::Promise<void> get(GetContext context) override {
    context.getResults().setJob(kj::heap<TestJob>());
    return kj::READY_NOW;
  }
};

constexpr size_t KIB = 1024;

// Small bounds: a get's answer holds about 1.25 KiB, a whoami's 256 bytes.
UnfinishedLimits smallLimits() {
  UnfinishedLimits limits;
  limits.answers = 100;
  limits.bytes = 32 * KIB;
  limits.hardBytes = 64 * KIB;
  limits.userBytes = 96 * KIB;
  return limits;
}

struct Env {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  size_t userBytes = 0;
};

// One connection: the server's end metered, the client an ordinary RPC client.
struct Connection {
  kj::Own<kj::AsyncIoStream> serverEnd;
  kj::Own<kj::AsyncIoStream> clientEnd;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<MeteredNetwork> metered;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> server;
  kj::Own<capnp::TwoPartyClient> client;
  api::JobManager::Client manager = nullptr;
  kj::Vector<kj::String> refusals;

  Connection(Env& env, UnfinishedLimits limits, bool rawClient = false) {
    auto pipe = env.io.provider->newTwoWayPipe();
    serverEnd = kj::mv(pipe.ends[0]);
    clientEnd = kj::mv(pipe.ends[1]);
    network = kj::heap<capnp::TwoPartyVatNetwork>(*serverEnd, capnp::rpc::twoparty::Side::SERVER);
    metered = kj::heap<MeteredNetwork>(*network, env.io.provider->getTimer(), limits,
                                       env.userBytes,
                                       [this](kj::StringPtr reason) { refusals.add(kj::str(reason)); });
    server = kj::heap(capnp::makeRpcServer(*metered, kj::heap<TestManager>()));
    if (rawClient) return;
    client = kj::heap<capnp::TwoPartyClient>(*clientEnd);
    manager = client->bootstrap().castAs<api::JobManager>();
  }
};

template <typename T>
kj::Maybe<kj::String> errorOf(Env& env, kj::Promise<T>&& promise) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { promise.wait(env.io.waitScope); })) {
    return kj::str(e->getDescription());
  }
  return nullptr;
}

TEST(MeteredNetwork, FinishedAnswersAreLetGo) {
  Env env;
  Connection c(env, smallLimits());
  for (int i = 0; i < 3000; i++) {
    c.manager.whoamiRequest().send().wait(env.io.waitScope);
    c.manager.getRequest().send().wait(env.io.waitScope);
  }
  // The last Finish is on its way: one more call makes sure it arrived.
  c.manager.whoamiRequest().send().ignoreResult().wait(env.io.waitScope);
  EXPECT_LE(c.metered->unfinished(), 2u);
  EXPECT_LE(env.userBytes, 4 * KIB);
  EXPECT_EQ(c.refusals.size(), 0u);
}

TEST(MeteredNetwork, AnAnswerWithoutCapabilitiesCountsLittle) {
  Env env;
  Connection c(env, smallLimits());
  kj::Vector<capnp::Response<api::JobManager::WhoamiResults>> kept;
  for (int i = 0; i < 90; i++) kept.add(c.manager.whoamiRequest().send().wait(env.io.waitScope));
  EXPECT_GE(c.metered->unfinished(), 90u);
  EXPECT_LT(c.metered->unfinishedBytes(), 91 * 512u);
  kj::Vector<capnp::Response<api::JobManager::GetResults>> gets;
  for (int i = 0; i < 10; i++) gets.add(c.manager.getRequest().send().wait(env.io.waitScope));
  // Each get keeps its results message (a capability), of its 1 KiB first segment at least.
  EXPECT_GE(c.metered->unfinishedBytes(), 90 * 256u + 10 * KIB);
  EXPECT_EQ(env.userBytes, c.metered->unfinishedBytes());
  EXPECT_EQ(c.refusals.size(), 0u);
}

TEST(MeteredNetwork, PastTheHardBoundTheConnectionClosesAtOnce) {
  Env env;
  Connection c(env, smallLimits());
  kj::Vector<capnp::Response<api::JobManager::GetResults>> kept;
  kj::Maybe<kj::String> error;
  for (int i = 0; i < 200 && error == nullptr; i++) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   kept.add(c.manager.getRequest().send().wait(env.io.waitScope));
                 })) {
      error = kj::str(e->getDescription());
    }
  }
  auto& description = KJ_ASSERT_NONNULL(error, "the connection was not closed");
  EXPECT_TRUE(strstr(description.cStr(), "64 KiB of answers unfinished on one connection"))
      << description.cStr();
  // Closed at the first answer past 64 KiB, well before the second's grace.
  EXPECT_LT(kept.size(), 64u);
  ASSERT_EQ(c.refusals.size(), 1u);
  // Dropped by the server after CLOSE_DELAY whatever the client does.
  c.metered->whenClosed().wait(env.io.waitScope);
}

TEST(MeteredNetwork, PastTheSoftBoundForTheGraceEvenInSilenceTheConnectionCloses) {
  Env env;
  Connection c(env, smallLimits());
  kj::Vector<capnp::Response<api::JobManager::WhoamiResults>> kept;
  // Past 100 answers (but not past any byte bound), then nothing more from the client.
  for (int i = 0; i < 110; i++) kept.add(c.manager.whoamiRequest().send().wait(env.io.waitScope));
  EXPECT_EQ(c.refusals.size(), 0u);
  auto start = env.io.provider->getTimer().now();
  while (c.refusals.size() == 0 &&
         env.io.provider->getTimer().now() - start < 5 * kj::SECONDS) {
    env.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(env.io.waitScope);
  }
  ASSERT_EQ(c.refusals.size(), 1u);
  auto waited = env.io.provider->getTimer().now() - start;
  EXPECT_GE(waited, OVER_LIMIT_GRACE - 100 * kj::MILLISECONDS);
  EXPECT_TRUE(strstr(c.refusals[0].cStr(), "100 answered calls unfinished on one connection for"))
      << c.refusals[0].cStr();
  auto error = errorOf(env, c.manager.whoamiRequest().send());
  EXPECT_TRUE(error != nullptr) << "the connection still answers";
}

TEST(MeteredNetwork, ABurstUnderTheGraceThatIsFinishedKeepsTheConnection) {
  Env env;
  Connection c(env, smallLimits());
  {
    kj::Vector<capnp::Response<api::JobManager::WhoamiResults>> kept;
    for (int i = 0; i < 110; i++) {
      kept.add(c.manager.whoamiRequest().send().wait(env.io.waitScope));
    }
  }
  env.io.provider->getTimer().afterDelay(OVER_LIMIT_GRACE + 500 * kj::MILLISECONDS)
      .wait(env.io.waitScope);
  EXPECT_EQ(c.refusals.size(), 0u);
  EXPECT_EQ(c.manager.whoamiRequest().send().wait(env.io.waitScope).getUser(), "alice");
}

TEST(MeteredNetwork, AUsersConnectionsShareOneBound) {
  Env env;
  // Each connection under its own bounds (48 KiB at most), the two together past the user's.
  auto limits = smallLimits();
  limits.bytes = 48 * KIB;
  limits.hardBytes = 128 * KIB;
  limits.userBytes = 64 * KIB;
  Connection first(env, limits);
  Connection second(env, limits);
  kj::Vector<capnp::Response<api::JobManager::GetResults>> kept;
  for (int i = 0; i < 10; i++) kept.add(first.manager.getRequest().send().wait(env.io.waitScope));
  kj::Maybe<kj::String> error;
  for (int i = 0; i < 40 && error == nullptr; i++) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   kept.add(second.manager.getRequest().send().wait(env.io.waitScope));
                 })) {
      error = kj::str(e->getDescription());
    }
  }
  auto& description = KJ_ASSERT_NONNULL(error, "the user's bound was not enforced");
  EXPECT_TRUE(strstr(description.cStr(), "64 KiB of answered calls unfinished over its connections"))
      << description.cStr();
  EXPECT_EQ(first.refusals.size(), 0u);
  // The connection that passed it goes, and takes its count with it.
  size_t held = env.userBytes;
  second.metered = nullptr;
  EXPECT_LT(env.userBytes, held);
  EXPECT_EQ(env.userBytes, first.metered->unfinishedBytes());
}

TEST(MeteredNetwork, ACallWhoseResultsGoElsewhereClosesTheConnection) {
  Env env;
  Connection c(env, smallLimits(), /*rawClient=*/true);
  {
    capnp::MallocMessageBuilder message;
    message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
    capnp::writeMessage(*c.clientEnd, message).wait(env.io.waitScope);
  }
  {
    // whoami on the bootstrap capability, its results to be kept for a third party.
    capnp::MallocMessageBuilder message;
    auto call = message.initRoot<capnp::rpc::Message>().initCall();
    call.setQuestionId(1);
    call.initTarget().initPromisedAnswer().setQuestionId(0);
    call.setInterfaceId(capnp::typeId<api::JobManager>());
    call.setMethodId(3);
    call.initParams().getContent().initAs<api::JobManager::WhoamiParams>();
    call.initSendResultsTo().setYourself();
    capnp::writeMessage(*c.clientEnd, message).wait(env.io.waitScope);
  }
  kj::Maybe<kj::String> aborted;
  for (;;) {
    auto read = capnp::tryReadMessage(*c.clientEnd).wait(env.io.waitScope);
    KJ_IF_MAYBE (reader, read) {
      auto message = (*reader)->getRoot<capnp::rpc::Message>();
      if (message.isAbort()) aborted = kj::str(message.getAbort().getReason());
    } else {
      break;
    }
  }
  auto& reason = KJ_ASSERT_NONNULL(aborted, "the connection was not aborted");
  EXPECT_TRUE(strstr(reason.cStr(), "sent elsewhere than to itself")) << reason.cStr();
  ASSERT_EQ(c.refusals.size(), 1u);
}

TEST(MeteredNetwork, CallsCancelledBeforeTheirAnswerLeaveNothingCounted) {
  Env env;
  Connection c(env, smallLimits());
  for (int round = 0; round < 20; round++) {
    kj::Vector<kj::Promise<void>> calls;
    for (int i = 0; i < 200; i++) {
      calls.add(c.manager.listRequest().send().ignoreResult().eagerlyEvaluate(nullptr));
    }
    c.manager.whoamiRequest().send().wait(env.io.waitScope);
    // Dropped: the client sends Finish for each before any answer.
    calls.clear();
    c.manager.whoamiRequest().send().wait(env.io.waitScope);
  }
  c.manager.whoamiRequest().send().ignoreResult().wait(env.io.waitScope);
  EXPECT_LE(c.metered->unfinished(), 2u);
  EXPECT_EQ(c.refusals.size(), 0u);
}

}  // namespace
}  // namespace runner

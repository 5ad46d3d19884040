#include "client/error-message.h"

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "client/test-printing.h"
#include "schema/runner.capnp.h"

namespace runner {
namespace client {
namespace {

kj::Exception caught(kj::Function<void()> code) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::mv(code))) {
    return kj::mv(*exception);
  }
  ADD_FAILURE() << "expected an exception";
  return KJ_EXCEPTION(FAILED, "nothing thrown");
}

TEST(CleanErrorMessage, DropsTheConditionAndKeepsMessageAndValues) {
  kj::StringPtr id = "1234";
  bool found = false;
  auto exception = caught([&]() { KJ_REQUIRE(found, "job not found", id); });
  // What KJ really produces, so that the test breaks if that ever changes.
  EXPECT_EQ(kj::str(exception.getDescription()), "expected found; job not found; id = 1234");
  EXPECT_EQ(cleanErrorMessage(exception), "job not found: 1234");
}

TEST(CleanErrorMessage, JoinsSeveralValues) {
  size_t count = 5000;
  size_t limit = 4096;
  auto exception =
      caught([&]() { KJ_REQUIRE(count <= limit, "too many arguments", count, limit); });
  EXPECT_EQ(cleanErrorMessage(exception), "too many arguments: 5000, 4096");
}

TEST(CleanErrorMessage, KeepsPlainMessagesAsTheyAre) {
  auto exception = caught([]() { KJ_FAIL_REQUIRE(kj::str("cannot read TLS key /k: denied")); });
  EXPECT_EQ(cleanErrorMessage(exception), "cannot read TLS key /k: denied");
  EXPECT_EQ(cleanErrorMessage(KJ_EXCEPTION(FAILED, "job not found: ", 42)), "job not found: 42");
}

TEST(CleanErrorMessage, GluesKjExceptionPiecesThatWereMeantAsOneSentence) {
  kj::StringPtr id = "1234";
  kj::StringPtr action = "stop";
  // KJ_EXCEPTION does not concatenate its arguments: it labels and delimits them.
  auto exception = KJ_EXCEPTION(FAILED, "permission denied: only the owner of job ", id,
                                " or an admin may ", action, " it");
  EXPECT_EQ(kj::str(exception.getDescription()),
            "permission denied: only the owner of job ; id = 1234;  or an admin may ; "
            "action = stop;  it");
  EXPECT_EQ(cleanErrorMessage(exception),
            "permission denied: only the owner of job 1234 or an admin may stop it");
}

TEST(CleanErrorMessage, KeepsTheConditionWhenThereIsNoMessage) {
  int pids = -1;
  auto exception = caught([&]() { KJ_REQUIRE(pids >= 0, pids); });
  EXPECT_EQ(cleanErrorMessage(exception), "expected pids >= 0 [-1 >= 0]: -1");
}

TEST(CleanErrorMessage, MakesOneLineOfMultiLineDescriptions) {
  EXPECT_EQ(cleanErrorMessage("OpenSSL error; message = error:1\n  error:2\n"),
            "OpenSSL error: error:1, error:2");
  EXPECT_EQ(cleanErrorMessage("  permission denied  "), "permission denied");
}

TEST(CleanErrorMessage, StripsRemoteExceptionPrefixes) {
  EXPECT_EQ(cleanErrorMessage("remote exception: remote exception: expected x; bad; x = 1"),
            "bad: 1");
  // Semicolons inside a message are not mistaken for labels.
  EXPECT_EQ(cleanErrorMessage("remote exception: a; b c"), "a; b c");
}

// A JobManager whose calls fail the way runnerd's do: the description is the line, kind first.
class FailingJobManager final : public api::JobManager::Server {
 protected:
  kj::Promise<void> get(GetContext context) override {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                         kj::str("not found: job ", context.getParams().getId()));
  }
  kj::Promise<void> whoami(WhoamiContext context) override {
    // Text of the user's that looks like KJ's "; name = value" parts.
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                         kj::str("invalid: label key 'a; b = c': only letters"));
  }
};

TEST(ErrorLine, PrintsWhatTheServerAnsweredAsItIs) {
  auto io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  capnp::TwoPartyClient server(*pipe.ends[0], kj::heap<FailingJobManager>(),
                               capnp::rpc::twoparty::Side::SERVER);
  capnp::TwoPartyClient client(*pipe.ends[1]);
  auto manager = client.bootstrap().castAs<api::JobManager>();

  auto getRequest = manager.getRequest();
  getRequest.setId("1234");
  auto notFound = caught([&]() { getRequest.send().wait(io.waitScope); });
  EXPECT_EQ(kj::StringPtr(notFound.getDescription()), "remote exception: not found: job 1234");
  EXPECT_EQ(errorLine(notFound), "not found: job 1234");

  auto invalid = caught([&]() { manager.whoamiRequest().send().wait(io.waitScope); });
  EXPECT_EQ(errorLine(invalid), "invalid: label key 'a; b = c': only letters");
}

TEST(ErrorLine, DropsThePrefixOfEveryHopAndParsesNothing) {
  auto twice = kj::Exception(kj::Exception::Type::FAILED, "(remote)", 0,
                             kj::str("remote exception: remote exception: limit: x; y = 1"));
  EXPECT_EQ(errorLine(twice), "limit: x; y = 1");
  // Whatever an older server sends is shown as it is too (writeError() escapes what a terminal
  // would act on).
  auto old = kj::Exception(kj::Exception::Type::FAILED, "(remote)", 0,
                           kj::str("remote exception: expected found; job not found; id = 42"));
  EXPECT_EQ(errorLine(old), "expected found; job not found; id = 42");
}

TEST(ErrorLine, CleansRunctlsOwnFailures) {
  kj::StringPtr path = "/no/key";
  auto local = caught([&]() { KJ_REQUIRE(path.size() == 0, "cannot read the TLS key", path); });
  EXPECT_EQ(errorLine(local), "cannot read the TLS key: /no/key");
  EXPECT_EQ(errorLine(KJ_EXCEPTION(DISCONNECTED, "Peer disconnected")), "Peer disconnected");
}

}  // namespace
}  // namespace client
}  // namespace runner

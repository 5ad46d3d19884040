#include "runner/user-error.h"

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "schema/runner.capnp.h"

namespace kj {
// GoogleTest prints KJ strings as text.
inline void PrintTo(const StringPtr& text, std::ostream* out) {
  *out << '"' << text.cStr() << '"';
}
}  // namespace kj

namespace runner {
namespace {

kj::Exception caught(kj::Function<void()> code) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::mv(code))) {
    return kj::mv(*exception);
  }
  ADD_FAILURE() << "expected an exception";
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("nothing thrown"));
}

kj::StringPtr descriptionOf(const kj::Exception& e) {
  return e.getDescription();
}

// The name of the kind `description` starts with, or "" without one.
kj::StringPtr kindNameOf(kj::StringPtr description) {
  KJ_IF_MAYBE (kind, errorKindOf(description)) {
    return errorKindName(*kind);
  }
  return "";
}

TEST(UserError, DescriptionIsTheKindThenTheMessageAndNothingElse) {
  auto e = userError(ErrorKind::NOT_FOUND, "job 42");
  EXPECT_EQ(descriptionOf(e), "not found: job 42");
  EXPECT_EQ(e.getType(), kj::Exception::Type::FAILED);
  // The thrower's place, for the server's log.
  EXPECT_TRUE(kj::StringPtr(e.getFile()).endsWith("user-error-test.c++")) << e.getFile();
  EXPECT_EQ(e.getLine(), __LINE__ - 5);

  EXPECT_EQ(descriptionOf(userError(ErrorKind::PERMISSION_DENIED,
                                    "only the owner of job X or an admin may stop it")),
            "permission denied: only the owner of job X or an admin may stop it");
  EXPECT_EQ(descriptionOf(userError(ErrorKind::INVALID, "empty command")),
            "invalid: empty command");
  EXPECT_EQ(descriptionOf(userError(ErrorKind::CONFLICT, "job X has ended")),
            "conflict: job X has ended");
  EXPECT_EQ(descriptionOf(userError(ErrorKind::UNAVAILABLE, "the store is not answering")),
            "unavailable: the store is not answering");
  EXPECT_EQ(descriptionOf(userError(ErrorKind::INTERNAL, "a bug")), "internal: a bug");
}

TEST(UserError, ALimitIsOverloadedAndATypeCanBeGiven) {
  auto limit = userError(ErrorKind::LIMIT, "too many running jobs for alice (limit 5)");
  EXPECT_EQ(descriptionOf(limit), "limit: too many running jobs for alice (limit 5)");
  EXPECT_EQ(limit.getType(), kj::Exception::Type::OVERLOADED);

  auto busy = userError(ErrorKind::UNAVAILABLE, kj::Exception::Type::OVERLOADED, "try later");
  EXPECT_EQ(busy.getType(), kj::Exception::Type::OVERLOADED);
  EXPECT_EQ(descriptionOf(busy), "unavailable: try later");
}

TEST(UserError, ThrowsWithTheSameDescription) {
  auto e = caught([]() { throwUserError(ErrorKind::CONFLICT, "the name web is in use by job X"); });
  EXPECT_EQ(descriptionOf(e), "conflict: the name web is in use by job X");
  EXPECT_EQ(e.getType(), kj::Exception::Type::FAILED);
  auto limit = caught(
      []() { throwUserError(ErrorKind::UNAVAILABLE, kj::Exception::Type::DISCONNECTED, "gone"); });
  EXPECT_EQ(descriptionOf(limit), "unavailable: gone");
  EXPECT_EQ(limit.getType(), kj::Exception::Type::DISCONNECTED);
}

TEST(UserError, MessagesAreOneLine) {
  EXPECT_EQ(descriptionOf(userError(ErrorKind::INVALID, "first line\n  second line\r\n")),
            "invalid: first line second line");
  // Text that merely looks like KJ's "; name = value" parts is the user's and stays.
  EXPECT_EQ(descriptionOf(userError(ErrorKind::INVALID, "label 'a; b = c' is bad")),
            "invalid: label 'a; b = c' is bad");
}

TEST(UserError, KindOfADescription) {
  EXPECT_EQ(kindNameOf("not found: job 42"), "not found");
  EXPECT_EQ(kindNameOf("permission denied: no"), "permission denied");
  EXPECT_EQ(kindNameOf("limit: too many"), "limit");
  EXPECT_EQ(kindNameOf("invalid: x"), "invalid");
  EXPECT_EQ(kindNameOf("conflict: x"), "conflict");
  EXPECT_EQ(kindNameOf("unavailable: x"), "unavailable");
  EXPECT_EQ(kindNameOf("internal: x"), "internal");
  EXPECT_EQ(kindNameOf("job not found: 42"), "");
  EXPECT_EQ(kindNameOf("limited: x"), "");
  EXPECT_EQ(kindNameOf("limit:x"), "");
  EXPECT_EQ(kindNameOf("limit"), "");
  EXPECT_EQ(kindNameOf("remote exception: limit: x"), "");
  EXPECT_EQ(kindNameOf(""), "");
  EXPECT_EQ(errorKindName(ErrorKind::PERMISSION_DENIED), "permission denied");
  EXPECT_EQ(withoutErrorKind("permission denied: only an admin may"), "only an admin may");
  EXPECT_EQ(withoutErrorKind("job not found: 42"), "job not found: 42");
}

TEST(UserError, AnExceptionWithoutAKindBecomesInternal) {
  auto kinded = withErrorKind(userError(ErrorKind::LIMIT, "too many"));
  EXPECT_EQ(descriptionOf(kinded), "limit: too many");

  int pids = -1;
  auto bug = caught([&]() { KJ_REQUIRE(pids >= 0, "bad pids", pids); });
  auto file = bug.getFile();
  auto line = bug.getLine();
  auto internal = withErrorKind(kj::mv(bug));
  EXPECT_EQ(descriptionOf(internal), "internal: expected pids >= 0 [-1 >= 0]; bad pids; pids = -1");
  EXPECT_EQ(internal.getType(), kj::Exception::Type::FAILED);
  EXPECT_EQ(kj::StringPtr(internal.getFile()), file);
  EXPECT_EQ(internal.getLine(), line);

  auto multiLine = withErrorKind(
      kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__, kj::str("a\nb")));
  EXPECT_EQ(descriptionOf(multiLine), "internal: a b");
  EXPECT_EQ(multiLine.getType(), kj::Exception::Type::DISCONNECTED);
}

TEST(UserError, PassedOnKeepsAKindFromAnotherProcessOrGivesTheFallback) {
  auto remote = [](kj::Exception::Type type, kj::StringPtr reason) {
    return kj::Exception(type, "(remote)", 0, kj::str("remote exception: ", reason));
  };
  auto kept =
      passedOn(remote(kj::Exception::Type::OVERLOADED, "limit: the supervisor holds 2 jobs"),
               ErrorKind::INTERNAL);
  EXPECT_EQ(descriptionOf(kept), "limit: the supervisor holds 2 jobs");
  EXPECT_EQ(kept.getType(), kj::Exception::Type::OVERLOADED);

  auto twice = passedOn(
      remote(kj::Exception::Type::FAILED, "remote exception: unavailable: shutting down"), nullptr);
  EXPECT_EQ(descriptionOf(twice), "unavailable: shutting down");

  auto fallback = passedOn(remote(kj::Exception::Type::DISCONNECTED, "the executor is gone"),
                           ErrorKind::UNAVAILABLE);
  EXPECT_EQ(descriptionOf(fallback), "unavailable: the executor is gone");
  EXPECT_EQ(fallback.getType(), kj::Exception::Type::DISCONNECTED);

  auto local = passedOn(kj::Exception(kj::Exception::Type::UNIMPLEMENTED, __FILE__, __LINE__,
                                      kj::str("the local executor cannot apply limits")),
                        ErrorKind::INVALID);
  EXPECT_EQ(descriptionOf(local), "invalid: the local executor cannot apply limits");
  EXPECT_EQ(local.getType(), kj::Exception::Type::UNIMPLEMENTED);

  // Nothing to go by: no kind, for withErrorKind() and the log, which has the file "(remote)".
  auto unknown = passedOn(remote(kj::Exception::Type::FAILED, "something broke"), nullptr);
  EXPECT_EQ(descriptionOf(unknown), "something broke");
  EXPECT_EQ(kj::StringPtr(unknown.getFile()), "(remote)");
  EXPECT_EQ(descriptionOf(withErrorKind(kj::mv(unknown))), "internal: something broke");
}

// A JobManager whose calls fail as runnerd's do.
class FailingJobManager final : public api::JobManager::Server {
 protected:
  kj::Promise<void> get(GetContext context) override {
    throwUserError(ErrorKind::NOT_FOUND, kj::str("job ", context.getParams().getId()));
  }
  kj::Promise<void> whoami(WhoamiContext context) override {
    return userError(ErrorKind::LIMIT, "too many job capabilities (limit 1024); release some");
  }
};

TEST(UserError, CrossesRpcAsTheReasonItself) {
  auto io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  capnp::TwoPartyClient server(*pipe.ends[0], kj::heap<FailingJobManager>(),
                               capnp::rpc::twoparty::Side::SERVER);
  capnp::TwoPartyClient client(*pipe.ends[1]);
  auto manager = client.bootstrap().castAs<api::JobManager>();

  auto get = manager.getRequest();
  get.setId("42");
  auto notFound = caught([&]() { get.send().wait(io.waitScope); });
  // The reason on the wire is the description; a C++ client sees it after KJ's prefix.
  EXPECT_EQ(descriptionOf(notFound), "remote exception: not found: job 42");
  EXPECT_EQ(notFound.getType(), kj::Exception::Type::FAILED);

  auto limit = caught([&]() { manager.whoamiRequest().send().wait(io.waitScope); });
  EXPECT_EQ(descriptionOf(limit),
            "remote exception: limit: too many job capabilities (limit 1024); release some");
  EXPECT_EQ(limit.getType(), kj::Exception::Type::OVERLOADED);
}

}  // namespace
}  // namespace runner

// The error kinds of schema/runner.capnp as a client in any language sees them: a real runnerd,
// a plain capnp client, and the exact reason of each failure (after KJ's "remote exception: ",
// which is the C++ client's, not the server's) with its exception type.

#include <gtest/gtest.h>
#include <iostream>
#include <kj/debug.h>
#include <signal.h>
#include <string>

#include "tests/e2e-support.h"

namespace kj {
// GoogleTest prints KJ strings as text.
inline void PrintTo(const String& text, std::ostream* out) {
  *out << '"' << text.cStr() << '"';
}
}  // namespace kj

namespace runner {
namespace {

using namespace testing;

constexpr kj::StringPtr REMOTE = "remote exception: "_kj;

struct Failure {
  kj::Exception::Type type;
  // The reason runnerd sent: the description without the C++ client's prefix.
  kj::String reason;
};

// How `promise` fails; fails the test when it does not.
template <typename T>
Failure failureOf(RunnerdFixture& f, kj::Promise<T>&& promise) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { promise.wait(f.io.waitScope); })) {
    kj::StringPtr description = e->getDescription();
    EXPECT_TRUE(description.startsWith(REMOTE)) << description.cStr();
    if (description.startsWith(REMOTE)) description = description.slice(REMOTE.size());
    return {e->getType(), kj::str(description)};
  }
  ADD_FAILURE() << "the call succeeded";
  return {kj::Exception::Type::FAILED, kj::str()};
}

// The words before the first ": ", as a client tells the kinds apart.
kj::String kindOf(kj::StringPtr reason) {
  KJ_IF_MAYBE (colon, reason.findFirst(':')) {
    return kj::str(reason.slice(0, *colon));
  }
  return kj::str();
}

kj::Promise<void> getJob(RunnerdFixture::Client& client, kj::StringPtr id) {
  auto request = client.manager.getRequest();
  request.setId(id);
  return request.send().ignoreResult();
}

api::Job::Client jobOf(RunnerdFixture::Client& client, kj::StringPtr id) {
  auto request = client.manager.getRequest();
  request.setId(id);
  return request.send().getJob();
}

TEST(ErrorKinds, NotFound) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");

  auto unknown = failureOf(f, getJob(*alice, "no-such-job"));
  EXPECT_EQ(unknown.reason, "not found: job no-such-job");
  EXPECT_EQ(unknown.type, kj::Exception::Type::FAILED);
  // A call pipelined on the job that get() did not find fails the same way.
  auto pipelined = failureOf(f, jobOf(*alice, "no-such-job").infoRequest().send());
  EXPECT_EQ(pipelined.reason, "not found: job no-such-job");
  // Too short to be taken for a prefix: still not found, with a hint.
  auto shortPrefix = failureOf(f, getJob(*alice, "abc"));
  EXPECT_EQ(shortPrefix.reason, "not found: job abc (an id prefix needs at least 4 characters)");
  // Text of the client's comes back printable, on one line.
  const char hostile[] = "x\n\x1b[2J";
  auto request = alice->manager.getRequest();
  request.setId(capnp::Text::Reader(hostile, sizeof(hostile) - 1));
  EXPECT_EQ(failureOf(f, request.send()).reason, "not found: job x\\n\\x1b[2J");
}

TEST(ErrorKinds, PermissionDenied) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  auto bob = f.connect("bob");
  auto job = startJob(f, *alice, {"/bin/sleep", "60"});

  auto stop = failureOf(f, jobOf(*bob, job.id).stopRequest().send());
  EXPECT_EQ(stop.reason, kj::str("permission denied: only the owner of job ", job.id,
                                 " or an admin may stop it"));
  EXPECT_EQ(stop.type, kj::Exception::Type::FAILED);
  auto watch = jobOf(*bob, job.id).watchOutputRequest();
  watch.setSink(kj::heap<Collector>());
  EXPECT_EQ(failureOf(f, watch.send()).reason,
            kj::str("permission denied: only the owner of job ", job.id,
                    " or an admin may read the output of it"));
  auto prune = bob->manager.pruneRequest();
  prune.setAllUsers(true);
  EXPECT_EQ(failureOf(f, prune.send()).reason,
            "permission denied: only an admin may prune every user's jobs");

  job.job.stopRequest().send().wait(f.io.waitScope);
}

TEST(ErrorKinds, LimitIsOverloaded) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  kj::StringPtr flags[] = {"--max-running-per-user=1"};
  RunnerdFixture f(flags);
  auto alice = f.connect("alice");
  auto first = startJob(f, *alice, {"/bin/sleep", "60"});

  auto second = alice->manager.startRequest();
  second.initSpec().setCommand("/bin/true");
  auto limit = failureOf(f, second.send());
  EXPECT_EQ(limit.reason,
            "limit: too many running jobs for alice (limit 1); wait for some to end or stop them");
  EXPECT_EQ(limit.type, kj::Exception::Type::OVERLOADED);
  // Another user has a quota of their own.
  auto bob = f.connect("bob");
  auto bobs = startJob(f, *bob, {"/bin/sleep", "60"});
  EXPECT_EQ(bobs.state, api::State::RUNNING);

  first.job.stopRequest().send().wait(f.io.waitScope);
  bobs.job.stopRequest().send().wait(f.io.waitScope);
}

TEST(ErrorKinds, Invalid) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");

  auto empty = alice->manager.startRequest();
  empty.initSpec().setCommand("");
  auto refused = failureOf(f, empty.send());
  EXPECT_EQ(refused.reason, "invalid: empty command");
  EXPECT_EQ(refused.type, kj::Exception::Type::FAILED);
  // What start() refuses, a call pipelined on its job gets too.
  auto pipelined = alice->manager.startRequest();
  pipelined.initSpec().setCommand("");
  EXPECT_EQ(failureOf(f, pipelined.send().getJob().infoRequest().send()).reason,
            "invalid: empty command");

  auto name = alice->manager.startRequest();
  name.initSpec().setCommand("/bin/true");
  name.getSpec().setName("has space");
  EXPECT_EQ(failureOf(f, name.send()).reason,
            "invalid: job name 'has space': only letters, digits, '.', '_' and '-' are allowed");

  auto executor = alice->manager.startRequest();
  executor.initSpec().setCommand("/bin/true");
  executor.getSpec().setExecutor("nonesuch");
  auto unknownExecutor = failureOf(f, executor.send()).reason;
  EXPECT_TRUE(unknownExecutor.startsWith("invalid: unknown executor 'nonesuch' (known: "))
      << unknownExecutor.cStr();

  auto job = startJob(f, *alice, {"/bin/sleep", "60"});
  auto signal = job.job.signalRequest();
  signal.setSignal(0);
  EXPECT_EQ(failureOf(f, signal.send()).reason,
            kj::str("invalid: 0 is not a signal; a signal is a number from 1 to ", SIGRTMAX,
                    " (or a name such as TERM, KILL or USR1)"));

  auto list = alice->manager.listRequest();
  list.initFilter().setAfter("not a cursor");
  EXPECT_EQ(failureOf(f, list.send()).reason,
            "invalid: bad list cursor: pass the `next` of the previous page, with the same "
            "filter");

  // A limit the executor cannot apply to this request, passed on from the supervisor.
  if (contains(f.serverLog(), "executors local, cgroup run their jobs")) {
    auto io = alice->manager.startRequest();
    auto spec = io.initSpec();
    spec.setCommand("/bin/true");
    spec.setExecutor("cgroup");
    spec.setWorkingDir("/nonexistent-error-kinds-test");
    spec.initLimits().setIoReadBytesPerSec(5000000);
    auto missing = failureOf(f, io.send());
    EXPECT_EQ(missing.reason,
              "invalid: io-read limit: the working directory /nonexistent-error-kinds-test does "
              "not exist (the limit throttles the disk it is on)");
  } else {
    std::cout << "the cgroup executor is not served here: its io-limit case is left out"
              << std::endl;
  }

  job.job.stopRequest().send().wait(f.io.waitScope);
}

TEST(ErrorKinds, Conflict) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");

  auto named = alice->manager.startRequest();
  named.initSpec().setCommand("/bin/sleep");
  named.getSpec().initArgs(1).set(0, "60");
  named.getSpec().setName("web");
  auto response = named.send().wait(f.io.waitScope);
  auto id = kj::str(response.getInfo().getId());
  auto job = response.getJob();

  auto again = alice->manager.startRequest();
  again.initSpec().setCommand("/bin/true");
  again.getSpec().setName("web");
  auto inUse = failureOf(f, again.send());
  EXPECT_EQ(inUse.reason, kj::str("conflict: the name web is in use by job ", id,
                                  " (remove it first, or choose another)"));
  EXPECT_EQ(inUse.type, kj::Exception::Type::FAILED);

  EXPECT_EQ(failureOf(f, job.removeRequest().send()).reason,
            kj::str("conflict: job ", id, " is still running (use --force to stop it first)"));

  job.stopRequest().send().wait(f.io.waitScope);
  auto signal = job.signalRequest();
  signal.setSignal(SIGTERM);
  EXPECT_EQ(failureOf(f, signal.send()).reason, kj::str("conflict: job ", id, " has ended"));

  jobOf(*alice, id).removeRequest().send().wait(f.io.waitScope);
  EXPECT_EQ(failureOf(f, job.infoRequest().send()).reason,
            kj::str("conflict: job ", id, " was removed"));
  EXPECT_EQ(failureOf(f, getJob(*alice, id)).reason, kj::str("not found: job ", id));
}

TEST(ErrorKinds, UnavailableWhileTheSupervisorIsGone) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  if (f.supervisorPid() == 0) GTEST_SKIP() << "runnerd runs without a supervisor here";
  auto alice = f.connect("alice");
  f.signalSupervisor(SIGKILL);

  auto start = alice->manager.startRequest();
  start.initSpec().setCommand("/bin/true");
  auto unavailable = failureOf(f, start.send());
  EXPECT_EQ(unavailable.reason,
            "unavailable: the executor 'local' is not answering; try again later");
  // The type says what happened behind the server: its supervisor went away.
  EXPECT_EQ(unavailable.type, kj::Exception::Type::DISCONNECTED);
  // The connection itself is fine.
  EXPECT_EQ(alice->manager.whoamiRequest().send().wait(f.io.waitScope).getUser(), "alice");
}

TEST(ErrorKinds, AnythingElseIsInternalAndLogged) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  // A method this server does not have (as a newer client might call): capnp's own exception,
  // which has no kind, is answered as internal and keeps its type.
  auto call = alice->manager.typelessRequest(capnp::typeId<api::JobManager>(), 99, nullptr);
  call.initAs<api::JobManager::WhoamiParams>();
  auto internal = failureOf(f, call.send());
  EXPECT_EQ(kindOf(internal.reason), "internal") << internal.reason.cStr();
  EXPECT_EQ(internal.type, kj::Exception::Type::UNIMPLEMENTED);
  EXPECT_EQ(internal.reason.findFirst('\n'), nullptr) << internal.reason.cStr();
  f.waitForLog("internal error in JobManager.@99 for alice peer=");

  // Repeated, they are all answered, but the log takes at most 20 lines of them per 10 s.
  for (int i = 0; i < 100; i++) {
    auto again = alice->manager.typelessRequest(capnp::typeId<api::JobManager>(), 99, nullptr);
    again.initAs<api::JobManager::WhoamiParams>();
    EXPECT_EQ(kindOf(failureOf(f, again.send()).reason), "internal");
  }
  // A call answered after them: every line they made is in the log by now.
  alice->manager.whoamiRequest().send().wait(f.io.waitScope);
  std::string log = f.serverLog().cStr();
  size_t lines = 0;
  for (auto at = log.find("internal error in JobManager.@99"); at != std::string::npos;
       at = log.find("internal error in JobManager.@99", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 20u);

  // Once the 10 s window is over, the user's next failed call is logged again, after a line that
  // counts those that were not: 101 calls made 20 lines, so 81.
  f.io.provider->getTimer().afterDelay(10500 * kj::MILLISECONDS).wait(f.io.waitScope);
  auto after = alice->manager.typelessRequest(capnp::typeId<api::JobManager>(), 99, nullptr);
  after.initAs<api::JobManager::WhoamiParams>();
  EXPECT_EQ(kindOf(failureOf(f, after.send()).reason), "internal");
  f.waitForLog("81 more refused or failed calls of user alice were not logged one by one (at "
               "most 20 per ");
  log = f.serverLog().cStr();
  auto summary = log.find("81 more refused or failed calls of user alice");
  auto next = log.find("internal error in JobManager.@99", summary);
  EXPECT_NE(next, std::string::npos) << "the call after the window is logged, after the count";
}

// Every kind a client can meet is one of the documented ones.
TEST(ErrorKinds, EveryReasonStartsWithADocumentedKind) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  auto bob = f.connect("bob");
  auto job = startJob(f, *alice, {"/bin/sleep", "60"});
  kj::Vector<kj::String> reasons;
  reasons.add(failureOf(f, getJob(*alice, "no-such-job")).reason);
  reasons.add(failureOf(f, jobOf(*bob, job.id).stopRequest().send()).reason);
  reasons.add(failureOf(f, job.job.removeRequest().send()).reason);
  auto empty = alice->manager.startRequest();
  empty.initSpec().setCommand("");
  reasons.add(failureOf(f, empty.send()).reason);
  kj::StringPtr documented[] = {"not found", "permission denied", "limit",   "invalid",
                                "conflict",  "unavailable",       "internal"};
  for (auto& reason : reasons) {
    bool known = false;
    for (auto kind : documented) known = known || kindOf(reason) == kind;
    EXPECT_TRUE(known) << reason.cStr();
    EXPECT_EQ(reason.findFirst('\n'), nullptr) << reason.cStr();
  }
  job.job.stopRequest().send().wait(f.io.waitScope);
}

}  // namespace
}  // namespace runner

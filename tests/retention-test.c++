// Removing ended jobs for good, against a real runnerd: `runctl rm` and `runctl prune` as users
// type them, the Job capabilities and output watches a removal leaves behind, runnerd's
// --retain-jobs and --retain-for, and the disk that removal gives back.

#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "tests/e2e-support.h"
#include "tests/runctl-process.h"

namespace runner {
namespace {

using testing::Collector;
using testing::contains;
using testing::errorOf;
using testing::RunctlOptions;
using testing::RunctlResult;
using testing::RunnerdFixture;

std::string trimmed(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

bool exists(kj::StringPtr path) {
  struct stat st;
  return stat(path.cStr(), &st) == 0;
}

kj::String logPath(RunnerdFixture& f, kj::StringPtr id) {
  return kj::str(f.dir(), "/logs/", id, ".log");
}

// What `du -s --block-size=1` says of the tree at `path`: the blocks its files and directories
// hold.
uint64_t diskUse(kj::StringPtr path) {
  static uint64_t total;
  total = 0;
  auto add = [](const char*, const struct stat* st, int, struct FTW*) {
    total += uint64_t(st->st_blocks) * 512;
    return 0;
  };
  KJ_ASSERT(nftw(path.cStr(), add, 16, FTW_PHYS) == 0, path);
  return total;
}

// Starts `argv` as `user` with runctl and returns the job's id once it has ended.
std::string runToEnd(RunnerdFixture& f, std::initializer_list<kj::StringPtr> argv,
                     kj::StringPtr user = "alice") {
  kj::Vector<kj::StringPtr> args;
  args.add("start");
  args.add("--");
  for (auto arg : argv) args.add(arg);
  auto started = testing::runctl(f, args, RunctlOptions{user});
  KJ_ASSERT(started.status == 0, started.err);
  auto id = trimmed(started.out);
  auto waited = testing::runctl(f, {"wait", id.c_str()}, RunctlOptions{user});
  KJ_ASSERT(waited.err.empty(), waited.err);
  return id;
}

// Polls `done` (after letting the fixture's event loop run) until it holds, for up to 20 s.
template <typename Func>
bool eventually(Func&& done) {
  for (int i = 0; i < 2000; i++) {
    if (done()) return true;
    usleep(10000);
  }
  return false;
}

class Retention : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_UNLESS_SERVER_CAN_RUN(); }
};

TEST_F(Retention, RmRemovesAnEndedJobsRecordAndOutput) {
  RunnerdFixture f;
  auto id = runToEnd(f, {"sh", "-c", "echo hello"});
  auto path = logPath(f, id.c_str());
  ASSERT_TRUE(exists(path));

  auto removed = testing::runctl(f, {"rm", id.c_str()});
  EXPECT_EQ(removed.status, 0) << removed.err;
  EXPECT_EQ(removed.out, id + "\n");
  EXPECT_EQ(removed.err, "");
  // Gone once rm has answered: the output file, and the record.
  EXPECT_FALSE(exists(path));
  auto status = testing::runctl(f, {"status", id.c_str()});
  EXPECT_EQ(status.status, 1);
  EXPECT_EQ(status.err, "runctl: not found: job " + id + "\n");
  auto list = testing::runctl(f, {"list"});
  EXPECT_EQ(list.out.find(id), std::string::npos);

  // And after a restart: the store no longer has it.
  f.stop();
  f.start();
  status = testing::runctl(f, {"status", id.c_str()});
  EXPECT_EQ(status.err, "runctl: not found: job " + id + "\n");
  EXPECT_FALSE(exists(path));
}

TEST_F(Retention, RmRefusesARunningJobUnlessForced) {
  RunnerdFixture f;
  auto started = testing::runctl(f, {"start", "sleep", "60"});
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = trimmed(started.out);

  auto refused = testing::runctl(f, {"rm", id.c_str()});
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(refused.err,
            "runctl: conflict: job " + id + " is still running (use --force to stop it first)\n");
  auto status = testing::runctl(f, {"status", "--json", id.c_str()});
  EXPECT_TRUE(contains(status.out.c_str(), "\"running\"")) << status.out;

  auto forced = testing::runctl(f, {"rm", "--force", "--grace", "100ms", id.c_str()});
  EXPECT_EQ(forced.status, 0) << forced.err;
  EXPECT_EQ(forced.out, id + "\n");
  EXPECT_FALSE(exists(logPath(f, id.c_str())));
  status = testing::runctl(f, {"status", id.c_str()});
  EXPECT_EQ(status.err, "runctl: not found: job " + id + "\n");
  // It was stopped, not left running.
  f.waitForLog(kj::str("job ended id=", id.c_str(), " owner=alice state=stopped"));
}

TEST_F(Retention, RmOfSeveralJobsGoesOnPastErrors) {
  RunnerdFixture f;
  auto first = runToEnd(f, {"true"});
  auto second = runToEnd(f, {"true"});
  auto result =
      testing::runctl(f, {"rm", first.c_str(), "no-such-job", second.c_str(), first.c_str()});
  EXPECT_EQ(result.status, 1);
  EXPECT_EQ(result.out, first + "\n" + second + "\n");
  // The second removal of `first` finds it gone: not found, or removed when its `get` (pipelined
  // in the same window) got the job before the first removal took it away.
  auto head = std::string("runctl: not found: job no-such-job\n");
  EXPECT_TRUE(result.err == head + "runctl: not found: job " + first + "\n" ||
              result.err == head + "runctl: conflict: job " + first + " was removed\n")
      << result.err;
  EXPECT_FALSE(exists(logPath(f, first.c_str())));
  EXPECT_FALSE(exists(logPath(f, second.c_str())));

  auto usage = testing::runctl(f, {"rm"});
  EXPECT_EQ(usage.status, 2);
  EXPECT_NE(usage.err.find("<id>"), std::string::npos) << usage.err;
}

TEST_F(Retention, OnlyTheOwnerOrAnAdminMayRemove) {
  RunnerdFixture f;
  auto id = runToEnd(f, {"true"});
  auto denied = testing::runctl(f, {"rm", id.c_str()}, RunctlOptions{"bob"});
  EXPECT_EQ(denied.status, 1);
  EXPECT_EQ(denied.err, "runctl: permission denied: only the owner of job " + id +
                            " or an admin may remove it\n");
  EXPECT_TRUE(exists(logPath(f, id.c_str())));

  auto removed = testing::runctl(f, {"rm", id.c_str()}, RunctlOptions{"admin"});
  EXPECT_EQ(removed.status, 0) << removed.err;
  EXPECT_EQ(removed.out, id + "\n");
  EXPECT_FALSE(exists(logPath(f, id.c_str())));
}

TEST_F(Retention, AHeldCapabilityAnswersThatTheJobWasRemoved) {
  RunnerdFixture f;
  auto alice = f.connect("alice");
  auto started = testing::startJob(f, *alice, {"true"});
  auto job = started.job;
  job.waitRequest().send().wait(f.io.waitScope);

  // Removed through another capability to it (another connection's), while this one is held.
  auto other = f.connect("alice");
  auto get = other->manager.getRequest();
  get.setId(started.id);
  get.send().getJob().removeRequest().send().wait(f.io.waitScope);
  EXPECT_FALSE(exists(logPath(f, started.id)));

  auto removed = kj::str("remote exception: conflict: job ", started.id, " was removed");
  auto expectRemoved = [&](kj::Maybe<kj::String> error) {
    KJ_IF_MAYBE (e, error) {
      EXPECT_EQ(*e, removed) << e->cStr();
    } else {
      ADD_FAILURE() << "the call succeeded";
    }
  };
  expectRemoved(errorOf(f, job.infoRequest().send()));
  expectRemoved(errorOf(f, job.waitRequest().send()));
  expectRemoved(errorOf(f, job.stopRequest().send()));
  expectRemoved(errorOf(f, job.removeRequest().send()));
  auto watch = job.watchOutputRequest();
  watch.setSink(kj::heap<Collector>());
  expectRemoved(errorOf(f, watch.send()));
  auto again = alice->manager.getRequest();
  again.setId(started.id);
  auto notFound = KJ_ASSERT_NONNULL(errorOf(f, again.send().getJob().infoRequest().send()));
  EXPECT_EQ(notFound, kj::str("remote exception: not found: job ", started.id)) << notFound.cStr();
}

TEST_F(Retention, AWatchOfARemovedJobEndsWithAnError) {
  RunnerdFixture f;
  auto alice = f.connect("alice");
  // More output than a watch sends before its client acknowledges some.
  auto started = testing::startJob(f, *alice, {"head", "-c", "16000000", "/dev/zero"});
  started.job.waitRequest().send().wait(f.io.waitScope);
  auto collector = kj::heap<Collector>();
  collector->stall = true;
  auto& c = *collector;
  auto watch = started.job.watchOutputRequest();
  watch.setSink(kj::mv(collector));
  watch.setFollow(true);
  auto subscription = watch.send().wait(f.io.waitScope);
  // The watch is stuck on a client that does not read.
  for (int i = 0; i < 100 && c.bytes.size() == 0; i++) {
    f.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(f.io.waitScope);
  }
  ASSERT_GT(c.bytes.size(), 0u);
  EXPECT_LT(c.bytes.size(), 16000000u);

  auto removed = testing::runctl(f, {"rm", started.id.cStr()});
  EXPECT_EQ(removed.status, 0) << removed.err;
  f.waitForLog(kj::str("output watch of job ", started.id, " for alice failed: conflict: job ",
                       started.id, " was removed"));
  EXPECT_TRUE(c.endState == nullptr);
  // runnerd is still serving.
  auto whoami = alice->manager.whoamiRequest().send().wait(f.io.waitScope);
  EXPECT_EQ(whoami.getUser(), "alice");
  EXPECT_FALSE(exists(logPath(f, started.id)));
}

TEST_F(Retention, LogsOfARemovedJobSaysItWasRemoved) {
  RunnerdFixture f;
  auto id = runToEnd(f, {"head", "-c", "16000000", "/dev/zero"});
  // runctl is not read until the job is gone: its writes to stdout, and so the watch, stall.
  const kj::StringPtr args[] = {"logs", "-f", id.c_str()};
  auto logs = kj::heap<testing::RunctlProcess>(f, args);
  usleep(500 * 1000);
  auto removed = testing::runctl(f, {"rm", id.c_str()});
  EXPECT_EQ(removed.status, 0) << removed.err;
  f.waitForLog(kj::str("output watch of job ", id.c_str(), " for alice failed"));
  auto result = logs->finish();
  EXPECT_EQ(result.status, 1);
  EXPECT_LT(result.out.size(), 16000000u);
  EXPECT_EQ(result.err, "runctl: conflict: job " + id + " was removed\n");
}

TEST_F(Retention, PruneRemovesOnlyEndedJobsOlderThanAsked) {
  RunnerdFixture f;
  auto old1 = runToEnd(f, {"sh", "-c", "printf 0123456789"});
  auto old2 = runToEnd(f, {"true"});
  usleep(2500 * 1000);
  auto recent = runToEnd(f, {"true"});
  auto running = trimmed(testing::runctl(f, {"start", "sleep", "60"}).out);
  auto bobs = runToEnd(f, {"true"}, "bob");
  usleep(2500 * 1000);

  auto pruned = testing::runctl(f, {"prune", "--older-than", "4s"});
  EXPECT_EQ(pruned.status, 0) << pruned.err;
  EXPECT_EQ(pruned.out, "removed 2 jobs, freed 10 B\n");
  EXPECT_FALSE(exists(logPath(f, old1.c_str())));
  EXPECT_FALSE(exists(logPath(f, old2.c_str())));
  EXPECT_TRUE(exists(logPath(f, recent.c_str())));

  // Without --older-than: every ended job of the caller's, and no other.
  pruned = testing::runctl(f, {"prune"});
  EXPECT_EQ(pruned.out, "removed 1 job, freed 0 B\n");
  EXPECT_FALSE(exists(logPath(f, recent.c_str())));
  EXPECT_TRUE(exists(logPath(f, running.c_str())));
  EXPECT_TRUE(exists(logPath(f, bobs.c_str())));
  auto list = testing::runctl(f, {"list", "--all"});
  EXPECT_NE(list.out.find(running), std::string::npos);
  EXPECT_NE(list.out.find(bobs), std::string::npos);
  EXPECT_EQ(list.out.find(old1), std::string::npos);

  auto usage = testing::runctl(f, {"prune", "--older-than", "soon"});
  EXPECT_EQ(usage.status, 2);
  EXPECT_NE(usage.err.find("expected a duration"), std::string::npos) << usage.err;
}

TEST_F(Retention, PruneOfAllUsersIsForAdminsOnly) {
  RunnerdFixture f;
  auto alices = runToEnd(f, {"true"});
  auto bobs = runToEnd(f, {"true"}, "bob");
  auto running = trimmed(testing::runctl(f, {"start", "sleep", "60"}, RunctlOptions{"bob"}).out);

  auto denied = testing::runctl(f, {"prune", "--all-users"}, RunctlOptions{"bob"});
  EXPECT_EQ(denied.status, 1);
  EXPECT_EQ(denied.err, "runctl: permission denied: only an admin may prune every user's jobs\n");
  EXPECT_TRUE(exists(logPath(f, alices.c_str())));

  auto pruned = testing::runctl(f, {"prune", "--all-users"}, RunctlOptions{"admin"});
  EXPECT_EQ(pruned.status, 0) << pruned.err;
  EXPECT_EQ(pruned.out, "removed 2 jobs, freed 0 B\n");
  EXPECT_FALSE(exists(logPath(f, alices.c_str())));
  EXPECT_FALSE(exists(logPath(f, bobs.c_str())));
  EXPECT_TRUE(exists(logPath(f, running.c_str())));
}

TEST_F(Retention, RetainJobsKeepsTheNewestEndedJobs) {
  const kj::StringPtr flags[] = {"--retain-jobs=3"};
  RunnerdFixture f(flags);
  kj::Vector<std::string> ids;
  for (int i = 0; i < 6; i++) ids.add(runToEnd(f, {"true"}, i % 2 == 0 ? "alice" : "bob"));
  auto running = trimmed(testing::runctl(f, {"start", "sleep", "60"}).out);

  EXPECT_TRUE(eventually([&]() {
    for (auto i : kj::indices(ids)) {
      if (exists(logPath(f, ids[i].c_str())) != (i >= 3)) return false;
    }
    return true;
  }));
  for (auto i : kj::indices(ids)) {
    auto status = testing::runctl(f, {"status", ids[i].c_str()});
    EXPECT_EQ(status.status, i >= 3 ? 0 : 1) << i;
  }
  // A running job does not count, and stays.
  EXPECT_TRUE(exists(logPath(f, running.c_str())));
  f.waitForLog(kj::str("job removed id=", ids[0].c_str(), " owner=alice by --retain-jobs"));
}

TEST_F(Retention, RetainForRemovesJobsThatEndedLongAgo) {
  const kj::StringPtr flags[] = {"--retain-for=2s"};
  RunnerdFixture f(flags);
  auto running = trimmed(testing::runctl(f, {"start", "sleep", "60"}).out);
  auto id = runToEnd(f, {"true"});
  // Kept for its time.
  EXPECT_EQ(testing::runctl(f, {"status", id.c_str()}).status, 0);
  EXPECT_TRUE(eventually([&]() { return !exists(logPath(f, id.c_str())); }));
  auto status = testing::runctl(f, {"status", id.c_str()});
  EXPECT_EQ(status.err, "runctl: not found: job " + id + "\n");
  f.waitForLog(kj::str("job removed id=", id.c_str(), " owner=alice by --retain-for"));
  // Running for longer than that is no reason.
  EXPECT_EQ(testing::runctl(f, {"status", running.c_str()}).status, 0);
}

TEST_F(Retention, RetentionFlagsRefuseValuesOutOfRange) {
  for (auto bad : {"--retain-for=500ms", "--retain-for=3651d", "--retain-for=soon",
                   "--retain-jobs=0", "--retain-jobs=many"}) {
    auto command = kj::str(getenv("TEST_SRCDIR"), "/runner/runner/runnerd ", bad,
                           " --tls-cert=x --tls-key=x --tls-ca=x 2>&1");
    FILE* out = popen(command.cStr(), "r");
    ASSERT_NE(out, nullptr);
    char line[512] = {};
    fgets(line, sizeof(line), out);
    int status = pclose(out);
    EXPECT_NE(status, 0) << bad;
    EXPECT_TRUE(contains(line, "--retain-")) << bad << ": " << line;
  }
}

// Jobs that each leave 8 KiB of output: what the state and log directories hold goes back down
// once they are removed. RETENTION_DISK_JOBS sets how many (300 by default). The state is
// measured with runnerd stopped: SQLite's write-ahead log grows to about 4 MiB between
// checkpoints whatever the jobs, and is folded into the database and deleted when runnerd closes
// it.
TEST_F(Retention, PruneGivesTheDiskBack) {
  size_t count = 300;
  if (const char* env = getenv("RETENTION_DISK_JOBS")) count = strtoul(env, nullptr, 10);
  RunnerdFixture f;
  auto state = kj::str(f.dir(), "/state");
  auto logs = kj::str(f.dir(), "/logs");
  f.stop();
  uint64_t stateAtStart = diskUse(state), logsAtStart = diskUse(logs);
  f.start();

  {
    auto alice = f.connect("alice");
    // A batch at a time, under the per-user limit of running jobs.
    for (size_t done = 0; done < count;) {
      kj::Vector<kj::Promise<void>> ends;
      for (size_t i = 0; i < 100 && done < count; i++, done++) {
        auto request = alice->manager.startRequest();
        auto spec = request.initSpec();
        spec.setCommand("head");
        auto args = spec.initArgs(2);
        args.set(0, "-c8192");
        args.set(1, "/dev/zero");
        ends.add(request.send().getJob().waitRequest().send().ignoreResult());
      }
      kj::joinPromises(ends.releaseAsArray()).wait(f.io.waitScope);
    }
  }
  uint64_t stateLive = diskUse(state);
  f.stop();
  uint64_t stateFull = diskUse(state), logsFull = diskUse(logs);
  f.start();

  auto pruned = testing::runctl(f, {"prune"});
  EXPECT_EQ(pruned.status, 0) << pruned.err;
  auto expected = kj::str("removed ", count, " jobs, freed ");
  EXPECT_EQ(pruned.out.rfind(expected.cStr(), 0), 0u) << pruned.out;
  EXPECT_TRUE(contains(pruned.out.c_str(), "MiB\n")) << pruned.out;
  uint64_t stateLivePruned = diskUse(state);
  f.stop();
  uint64_t stateAfter = diskUse(state), logsAfter = diskUse(logs);
  printf(
      "jobs=%zu state (bytes on disk, runnerd stopped): start=%lu full=%lu pruned=%lu "
      "(running: full=%lu pruned=%lu); logs: start=%lu full=%lu pruned=%lu\n",
      count, (unsigned long)stateAtStart, (unsigned long)stateFull, (unsigned long)stateAfter,
      (unsigned long)stateLive, (unsigned long)stateLivePruned, (unsigned long)logsAtStart,
      (unsigned long)logsFull, (unsigned long)logsAfter);

  // The output files are gone (what is left is the directory itself and its spares).
  EXPECT_GE(logsFull, logsAtStart + count * 8192);
  EXPECT_LT(logsAfter, logsAtStart + (logsFull - logsAtStart) / 10);
  // The database gives the pages of the removed jobs back (auto_vacuum = INCREMENTAL).
  EXPECT_LT(stateAfter, stateAtStart + (stateFull - stateAtStart) / 2);
}

}  // namespace
}  // namespace runner

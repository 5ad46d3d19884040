#include "executor-rpc/held-records.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace runner::executor_rpc {
namespace {

// A supervisor directory of the test's own (root's, 0700), holding held/.
class HeldRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/var/tmp/held-records-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr) << strerror(errno);
    dir = pattern;
    held = dir + "/held";
  }
  void TearDown() override {
    if (!dir.empty()) EXPECT_EQ(system(("rm -rf '" + dir + "'").c_str()), 0);
  }

  template <typename T>
  T wait(kj::Promise<T>&& promise) {
    return promise.wait(io->waitScope);
  }

  std::string dir;
  std::string held;
  // std::unique_ptr: gtest's fixture destructor is noexcept, kj's are not.
  std::unique_ptr<kj::AsyncIoContext> io = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
};

HeldRecord running(kj::StringPtr id) {
  HeldRecord record;
  record.jobId = kj::str(id);
  record.executor = kj::str("cgroup");
  record.bootId = currentBootId();
  record.state = HeldRecord::State::RUNNING;
  record.trace.pid = 4242;
  record.trace.pidStartTime = 987654321;
  record.trace.cgroupVersion = 1;
  record.trace.cgroupPaths = kj::arr(kj::str("/sys/fs/cgroup/memory/runner/", id),
                                     kj::str("/sys/fs/cgroup/freezer/runner/", id));
  record.trace.accounting = true;
  record.trace.placement.cgroup = executors::Placement::Cgroup{
      1, kj::str("/sys/fs/cgroup/memory/runner/", id), kj::str("")};
  return record;
}

TEST_F(HeldRecordsTest, WhatIsWrittenIsReadBackByTheNextSupervisor) {
  {
    HeldRecords records(held.c_str());
    wait(records.write(running("a")));
    wait(records.write(running("b")));
    auto ended = running("b");
    ended.state = HeldRecord::State::ENDED;
    ended.end.signaled = true;
    ended.end.termSignal = 9;
    ended.end.oomKilled = true;
    ended.end.usage.peakMemoryBytes = 1 << 20;
    wait(records.write(ended));
    auto lost = running("c");
    lost.state = HeldRecord::State::ENDED;
    lost.end.lost = kj::str("gone");
    wait(records.write(lost));
    wait(records.write(running("d")));
    wait(records.remove("d"));
  }
  struct stat st;
  ASSERT_EQ(stat(held.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  HeldRecords records(held.c_str());
  std::vector<std::string> lines;
  auto found = records.load([&](kj::StringPtr line) { lines.push_back(line.cStr()); });
  EXPECT_TRUE(lines.empty());
  ASSERT_EQ(found.size(), 3u);
  std::sort(found.begin(), found.end(),
            [](const HeldRecord& x, const HeldRecord& y) { return x.jobId < y.jobId; });
  EXPECT_EQ(found[0].jobId, "a");
  EXPECT_EQ(found[0].executor, "cgroup");
  EXPECT_EQ(found[0].bootId, currentBootId());
  EXPECT_TRUE(found[0].state == HeldRecord::State::RUNNING);
  EXPECT_EQ(found[0].trace.pid, 4242);
  EXPECT_EQ(found[0].trace.pidStartTime, 987654321u);
  ASSERT_EQ(found[0].trace.cgroupPaths.size(), 2u);
  EXPECT_EQ(found[0].trace.cgroupPaths[1], "/sys/fs/cgroup/freezer/runner/a");
  EXPECT_TRUE(found[0].trace.accounting);
  EXPECT_EQ(KJ_ASSERT_NONNULL(found[0].trace.placement.cgroup).path,
            "/sys/fs/cgroup/memory/runner/a");
  EXPECT_TRUE(found[1].state == HeldRecord::State::ENDED);
  EXPECT_TRUE(found[1].end.signaled);
  EXPECT_EQ(found[1].end.termSignal, 9);
  EXPECT_TRUE(found[1].end.oomKilled);
  EXPECT_EQ(found[1].end.usage.peakMemoryBytes, 1u << 20);
  EXPECT_EQ(found[1].end.lost, "");
  EXPECT_EQ(found[2].end.lost, "gone");
}

TEST_F(HeldRecordsTest, FilesThatAreNotRootsRecordsAreLeftAndReported) {
  {
    HeldRecords records(held.c_str());
    wait(records.write(running("mine")));
  }
  // Another user's file, a record under another job's name, garbage, a replacement cut short.
  ASSERT_EQ(system(("cp " + held + "/mine " + held + "/theirs && chown 65534 " + held +
                    "/theirs && cp " + held + "/mine " + held + "/renamed && echo garbage > " +
                    held + "/garbage && touch " + held + "/.mine.new")
                       .c_str()),
            0);
  HeldRecords records(held.c_str());
  std::vector<std::string> lines;
  auto found = records.load([&](kj::StringPtr line) { lines.push_back(line.cStr()); });
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].jobId, "mine");
  ASSERT_EQ(lines.size(), 3u);
  std::sort(lines.begin(), lines.end());
  EXPECT_NE(lines[0].find("/garbage, left as it is: it is not a record"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find("/renamed, left as it is: it names another job (mine)"),
            std::string::npos)
      << lines[1];
  EXPECT_NE(lines[2].find("/theirs, left as it is: it is not a file of this supervisor's user"),
            std::string::npos)
      << lines[2];
  struct stat st;
  EXPECT_NE(lstat((held + "/.mine.new").c_str(), &st), 0);
  EXPECT_EQ(lstat((held + "/theirs").c_str(), &st), 0);
}

TEST_F(HeldRecordsTest, ADirectoryOthersMayWriteIsRefused) {
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { HeldRecords records(held.c_str()); })) {
    EXPECT_EQ(e->getDescription(), kj::str(dir.c_str(),
                                           " must be owned by uid 0 and writable by "
                                           "nobody else (it is owned by uid 0, mode "
                                           "0777)"));
  } else {
    ADD_FAILURE() << "records were kept in a directory anyone may change";
  }
}

TEST_F(HeldRecordsTest, EachVersionIsAppendedAndTheLastWholeOneIsTheRecord) {
  auto path = held + "/job";
  struct stat st;
  {
    HeldRecords records(held.c_str());
    auto launching = running("job");
    launching.state = HeldRecord::State::LAUNCHING;
    launching.trace.pid = 0;
    wait(records.write(launching));
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    auto firstSize = st.st_size;
    auto inode = st.st_ino;
    wait(records.write(running("job")));
    auto ended = running("job");
    ended.state = HeldRecord::State::ENDED;
    ended.end.exitCode = 7;
    wait(records.write(ended));
    // The same file, grown by the later versions: no file is made per version.
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_ino, inode);
    EXPECT_GT(st.st_size, 2 * firstSize);
  }
  HeldRecords records(held.c_str());
  std::vector<std::string> lines;
  auto found = records.load([&](kj::StringPtr line) { lines.push_back(line.cStr()); });
  ASSERT_EQ(found.size(), 1u);
  EXPECT_TRUE(found[0].state == HeldRecord::State::ENDED);
  EXPECT_EQ(found[0].end.exitCode, 7);
  EXPECT_EQ(found[0].trace.pid, 4242);
  EXPECT_TRUE(lines.empty());
}

TEST_F(HeldRecordsTest, AWriteTheMachineCutShortIsDroppedAndTheFileCutBack) {
  auto path = held + "/job";
  off_t whole = 0;
  {
    HeldRecords records(held.c_str());
    wait(records.write(running("job")));
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    whole = st.st_size;
  }
  // Half of a second version, as a machine that stopped mid-write leaves it.
  ASSERT_EQ(system(("head -c " + std::to_string(whole / 2 + 3) + " " + path + " >> " + path)
                       .c_str()),
            0);
  {
    HeldRecords records(held.c_str());
    std::vector<std::string> lines;
    auto found = records.load([&](kj::StringPtr line) { lines.push_back(line.cStr()); });
    ASSERT_EQ(found.size(), 1u);
    EXPECT_TRUE(found[0].state == HeldRecord::State::RUNNING);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_NE(lines[0].find("ended in a write cut short; its last whole version is kept"),
              std::string::npos)
        << lines[0];
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, whole);
    // The next version follows the whole one and is read back.
    auto ended = running("job");
    ended.state = HeldRecord::State::ENDED;
    ended.end.exitCode = 3;
    wait(records.write(ended));
  }
  HeldRecords records(held.c_str());
  auto found = records.load([](kj::StringPtr) {});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].end.exitCode, 3);
}

TEST_F(HeldRecordsTest, AFileGrownPastItsBoundIsReplacedByItsLastVersion) {
  auto path = held + "/job";
  HeldRecords records(held.c_str());
  struct stat st;
  for (int i = 0; i < 100; i++) {
    auto record = running("job");
    record.trace.pid = 1000 + i;
    wait(records.write(record));
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_LE(size_t(st.st_size), HeldRecords::COMPACT_AT);
  }
  auto found = records.load([](kj::StringPtr) {});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].trace.pid, 1099);
}

TEST_F(HeldRecordsTest, ARemovedRecordsFileIsEmptiedAndTakenByTheNextJob) {
  HeldRecords records(held.c_str());
  wait(records.write(running("first")));
  struct stat st;
  ASSERT_EQ(stat((held + "/first").c_str(), &st), 0);
  auto inode = st.st_ino;
  wait(records.remove("first"));
  EXPECT_NE(lstat((held + "/first").c_str(), &st), 0);
  wait(records.write(running("second")));
  ASSERT_EQ(stat((held + "/second").c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, inode);
  auto found = records.load([](kj::StringPtr) {});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].jobId, "second");
  // A spare left by a supervisor that stopped is removed by the next one's load().
  wait(records.write(running("third")));
  wait(records.remove("third"));
  HeldRecords next(held.c_str());
  std::vector<std::string> lines;
  auto again = next.load([&](kj::StringPtr line) { lines.push_back(line.cStr()); });
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(system(("test -z \"$(ls -A " + held + " | grep -v '^second$')\"").c_str()), 0);
}

TEST_F(HeldRecordsTest, PostedRecordsAreWrittenInOrderAndOnlyTheirFailuresComeBack) {
  HeldRecords records(held.c_str());
  auto failed = records.failed();
  records.post(running("posted"));
  auto ended = running("posted");
  ended.state = HeldRecord::State::ENDED;
  ended.end.exitCode = 7;
  records.post(ended);
  // A job whose record cannot be written: its name is taken by a directory.
  ASSERT_EQ(mkdir((held + "/blocked").c_str(), 0700), 0);
  records.post(running("blocked"));
  wait(records.write(running("after")));
  // Done in order, before the write asked for after them.
  {
    HeldRecords next(held.c_str());
    auto found = next.load([](kj::StringPtr) {});
    std::sort(found.begin(), found.end(),
              [](const HeldRecord& x, const HeldRecord& y) { return x.jobId < y.jobId; });
    ASSERT_EQ(found.size(), 2u);
    EXPECT_EQ(found[1].jobId, "posted");
    EXPECT_TRUE(found[1].state == HeldRecord::State::ENDED);
    EXPECT_EQ(found[1].end.exitCode, 7);
  }
  wait(kj::mv(failed));
  auto lines = records.takeFailures();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(std::string(lines[0].cStr()).find("record of job blocked"), std::string::npos)
      << lines[0].cStr();
  // One failure, one line: nothing more is pending.
  EXPECT_EQ(records.takeFailures().size(), 0u);
  EXPECT_FALSE(records.failed().poll(io->waitScope));
  // The thread is idle once the posted end is synced (or removed).
  wait(records.sync("posted"));
  EXPECT_TRUE(records.idle());
}

TEST_F(HeldRecordsTest, ALaunchRecordIsWrittenAndRemovedOnTheCallingThread) {
  HeldRecords records(held.c_str());
  auto launching = running("here");
  launching.state = HeldRecord::State::LAUNCHING;
  launching.trace.pid = 0;
  records.writeHere(launching);
  {
    HeldRecords next(held.c_str());
    auto found = next.load([](kj::StringPtr) {});
    ASSERT_EQ(found.size(), 1u);
    EXPECT_TRUE(found[0].state == HeldRecord::State::LAUNCHING);
  }
  // It takes a spare file, as the records' thread does.
  wait(records.write(running("spare")));
  wait(records.remove("spare"));
  struct stat st;
  auto spares = [&]() {
    return system(("test -n \"$(ls -A " + held + " | grep '^\\.spare-')\"").c_str()) == 0;
  };
  EXPECT_TRUE(spares());
  records.writeHere(running("taken"));
  EXPECT_FALSE(spares());
  records.removeHere("taken");
  records.removeHere("taken");  // already gone: nothing to do
  EXPECT_NE(lstat((held + "/taken").c_str(), &st), 0);
  auto ended = running("here");
  ended.state = HeldRecord::State::ENDED;
  EXPECT_THROW(records.writeHere(ended), kj::Exception);
}

TEST_F(HeldRecordsTest, ASpareThatHoldsBytesIsEmptiedBeforeItIsTaken) {
  HeldRecords records(held.c_str());
  wait(records.write(running("first")));
  wait(records.remove("first"));
  // Whatever wrote to the spare after it was emptied (a write that came too late), the next
  // record does not follow those bytes.
  auto spare = kj::str(held.c_str(), "/.spare-0");
  {
    auto stray = running("stray");
    HeldRecords elsewhere((dir + "/elsewhere").c_str());
    wait(elsewhere.write(stray));
  }
  ASSERT_EQ(system(("cat " + dir + "/elsewhere/stray >> " + spare.cStr()).c_str()), 0);
  struct stat st;
  ASSERT_EQ(stat(spare.cStr(), &st), 0);
  ASSERT_GT(st.st_size, 0);
  records.writeHere(running("second"));
  ASSERT_EQ(stat((held + "/second").c_str(), &st), 0);
  auto found = records.load([](kj::StringPtr) {});
  ASSERT_EQ(found.size(), 1u) << "the spare's bytes were kept";
  EXPECT_EQ(found[0].jobId, "second");
}

TEST_F(HeldRecordsTest, AnEndIsPendingUntilSyncedOrRemoved) {
  HeldRecords records(held.c_str());
  auto ended = running("synced");
  ended.state = HeldRecord::State::ENDED;
  wait(records.write(ended));
  // Written, not yet synced: a re-exec or an exit waits for it.
  EXPECT_FALSE(records.idle());
  wait(records.sync("synced"));
  EXPECT_TRUE(records.idle());
  // A second sync of the same record has nothing to do.
  wait(records.sync("synced"));

  auto acknowledged = running("acknowledged");
  acknowledged.state = HeldRecord::State::ENDED;
  wait(records.write(acknowledged));
  EXPECT_FALSE(records.idle());
  wait(records.remove("acknowledged"));
  EXPECT_TRUE(records.idle());
  // The sync that was due finds nothing to sync, and does not fail.
  wait(records.sync("acknowledged"));
  EXPECT_TRUE(records.idle());

  // A running job's record is never waited for.
  wait(records.write(running("running")));
  EXPECT_TRUE(records.idle());
  auto found = records.load([](kj::StringPtr) {});
  ASSERT_EQ(found.size(), 2u);
}

TEST_F(HeldRecordsTest, AnEndNotSyncedWhenTheRecordsCloseIsKept) {
  {
    HeldRecords records(held.c_str());
    auto ended = running("job");
    ended.state = HeldRecord::State::ENDED;
    ended.end.exitCode = 3;
    wait(records.write(ended));
    EXPECT_FALSE(records.idle());
  }
  HeldRecords records(held.c_str());
  auto found = records.load([](kj::StringPtr) {});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_TRUE(found[0].state == HeldRecord::State::ENDED);
  EXPECT_EQ(found[0].end.exitCode, 3);
  EXPECT_TRUE(records.idle());
}

}  // namespace
}  // namespace runner::executor_rpc

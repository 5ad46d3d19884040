#include "runner/follower.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/encoding.h>
#include <kj/vector.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "runner/test-harness.h"

namespace runner {
namespace {

using testing::Harness;
using testing::TempDir;

#define SKIP_UNLESS_JOBS_CAN_RUN()                \
  KJ_IF_MAYBE(reason, testing::cannotRunJobs()) { \
    GTEST_SKIP() << reason->cStr();               \
  }

// Collects what a follower delivers. Optionally holds each write for a turn of the event
// loop, like a network peer would.
class CollectingSink final : public OutputSink {
 public:
  kj::Vector<kj::byte> bytes;
  size_t writes = 0;
  kj::Maybe<JobState> endState;
  kj::Array<kj::byte> buffer;

  kj::ArrayPtr<kj::byte> nextBuffer(size_t size) override {
    EXPECT_EQ(endState, nullptr) << "buffer asked for after end";
    // Filled with a pattern, so that bytes the follower did not read would show.
    buffer = kj::heapArray<kj::byte>(size);
    memset(buffer.begin(), 0xa5, buffer.size());
    return buffer;
  }

  kj::Promise<void> write(size_t size) override {
    EXPECT_EQ(endState, nullptr) << "write after end";
    EXPECT_GT(size, 0u) << "empty write";
    EXPECT_LE(size, buffer.size()) << "write beyond the buffer";
    bytes.addAll(buffer.slice(0, kj::min(size, buffer.size())));
    // The buffer is spent: a write without a new one is a follower bug.
    buffer = nullptr;
    ++writes;
    return kj::evalLater([]() {});
  }

  kj::Promise<void> end(const Job& job) override {
    endState = job.record().state;
    return kj::READY_NOW;
  }

  kj::String sha256() const { return digest(bytes.asPtr()); }

  static kj::String digest(kj::ArrayPtr<const kj::byte> data) {
    unsigned char out[SHA256_DIGEST_LENGTH];
    SHA256(data.begin(), data.size(), out);
    return kj::encodeHex(kj::arrayPtr(out, sizeof(out)));
  }
};

// A file of random bytes that the job user can read.
kj::Array<kj::byte> writeRandomFile(kj::StringPtr path, size_t size) {
  auto data = kj::heapArray<kj::byte>(size);
  for (size_t done = 0; done < size;) {
    ssize_t n = getrandom(data.begin() + done, size - done, 0);
    KJ_ASSERT(n > 0);
    done += n;
  }
  int fd = open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KJ_ASSERT(fd >= 0);
  kj::FdOutputStream(fd).write(data.begin(), data.size());
  close(fd);
  return data;
}

size_t openDescriptors() {
  size_t count = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count;
}

constexpr size_t TWENTY_MIB = 20 * 1024 * 1024;

TEST(Follower, DeliversTwentyMibOfRandomBytesExactly) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  auto input = kj::str(dir.path(), "/input");
  auto data = writeRandomFile(input, TWENTY_MIB);
  Harness h(dir);
  kj::StringPtr argv[] = {"/bin/cat", input};
  auto& job = h.start(argv);
  CollectingSink sink;
  followOutput(job, sink, 0, true).wait(h.io.waitScope);
  EXPECT_EQ(sink.endState, JobState::EXITED);
  ASSERT_EQ(sink.bytes.size(), TWENTY_MIB);
  EXPECT_EQ(sink.sha256(), CollectingSink::digest(data));
}

TEST(Follower, FiftyConcurrentFollowersReceiveIdenticalBytes) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  auto input = kj::str(dir.path(), "/input");
  auto data = writeRandomFile(input, TWENTY_MIB);
  auto expected = CollectingSink::digest(data);
  Harness h(dir);
  // The job writes slowly enough that followers really follow a live file.
  auto& job = h.sh(kj::str("for i in 1 2 3 4; do head -c 5242880; sleep 0.1; done < ", input));
  kj::Vector<kj::Own<CollectingSink>> sinks;
  kj::Vector<kj::Promise<void>> followers;
  for (int i = 0; i < 50; i++) {
    sinks.add(kj::heap<CollectingSink>());
    followers.add(followOutput(job, *sinks.back(), 0, true));
  }
  kj::joinPromises(followers.releaseAsArray()).wait(h.io.waitScope);
  for (auto& sink : sinks) {
    ASSERT_EQ(sink->bytes.size(), TWENTY_MIB);
    EXPECT_EQ(sink->sha256(), expected);
    EXPECT_EQ(sink->endState, JobState::EXITED);
  }
}

TEST(Follower, LateReaderGetsEverythingFromByteZero) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("seq 1 100000");
  h.waitEnded(job);
  CollectingSink sink;
  followOutput(job, sink, 0, true).wait(h.io.waitScope);
  auto expected = h.output(job);
  EXPECT_EQ(kj::str(sink.bytes.asPtr().asChars()), expected);
  EXPECT_EQ(expected.size(), 588895u);
  EXPECT_EQ(sink.endState, JobState::EXITED);
}

TEST(Follower, ReaderAttachedBeforeTheFirstWriteIsWoken) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("sleep 0.3; echo first; sleep 0.3; echo second");
  CollectingSink sink;
  auto following = followOutput(job, sink, 0, true);
  // Nothing yet: the follower is asleep at the end of an empty file.
  h.io.waitScope.poll();
  EXPECT_EQ(sink.bytes.size(), 0u);
  following.wait(h.io.waitScope);
  EXPECT_EQ(kj::str(sink.bytes.asPtr().asChars()), "first\nsecond\n");
  EXPECT_EQ(sink.endState, JobState::EXITED);
}

TEST(Follower, ReadsFromAnOffset) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("printf 0123456789");
  h.waitEnded(job);
  CollectingSink sink;
  followOutput(job, sink, 4, true).wait(h.io.waitScope);
  EXPECT_EQ(kj::str(sink.bytes.asPtr().asChars()), "456789");
}

TEST(Follower, OffsetsPastTheEndReadAsTheEnd) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("printf 0123456789");
  h.waitEnded(job);
  for (uint64_t offset : {uint64_t(10), uint64_t(1) << 40, uint64_t(INT64_MAX), UINT64_MAX}) {
    CollectingSink sink;
    followOutput(job, sink, offset, true).wait(h.io.waitScope);
    EXPECT_EQ(sink.bytes.size(), 0u) << offset;
    EXPECT_EQ(sink.endState, JobState::EXITED) << offset;
  }
}

TEST(Follower, WithoutFollowStopsAtTheCurrentEnd) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("echo early; sleep 1000");
  while (h.output(job) != "early\n") job.outputChanged().wait(h.io.waitScope);
  CollectingSink sink;
  followOutput(job, sink, 0, false).wait(h.io.waitScope);
  EXPECT_EQ(kj::str(sink.bytes.asPtr().asChars()), "early\n");
  EXPECT_EQ(sink.endState, JobState::RUNNING);
}

TEST(Follower, FollowerOfAStoppedJobEndsWithTheFinalState) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("echo started; exec sleep 1000");
  CollectingSink sink;
  auto following = followOutput(job, sink, 0, true);
  while (h.output(job) != "started\n") job.outputChanged().wait(h.io.waitScope);
  job.stop(1 * kj::SECONDS).wait(h.io.waitScope);
  following.wait(h.io.waitScope);
  EXPECT_EQ(kj::str(sink.bytes.asPtr().asChars()), "started\n");
  EXPECT_EQ(sink.endState, JobState::STOPPED);
}

TEST(Follower, CancellingOneFollowerFreesItAndLeavesTheOthers) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("echo a; read line; echo b");  // stdin is /dev/null: read ends at once
  h.waitEnded(job);
  auto& running = h.sh("echo x; sleep 0.5; echo y");
  size_t before = openDescriptors();
  CollectingSink cancelled, kept;
  {
    auto first = followOutput(running, cancelled, 0, true);
    auto second = followOutput(running, kept, 0, true);
    h.io.waitScope.poll();
    EXPECT_EQ(openDescriptors(), before + 2);
    first = nullptr;
    EXPECT_EQ(openDescriptors(), before + 1);
    second.wait(h.io.waitScope);
  }
  // The job has ended too, which closed its own descriptors.
  EXPECT_LT(openDescriptors(), before);
  EXPECT_EQ(cancelled.endState, nullptr);
  EXPECT_EQ(kj::str(kept.bytes.asPtr().asChars()), "x\ny\n");
  EXPECT_EQ(h.output(job), "a\nb\n");
}

TEST(Follower, AWriterThatStreamsIsReadInGatheredChunks) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("exec sleep 60");
  CollectingSink sink;
  auto following = followOutput(job, sink, 0, true);
  // 4,000 writes of 8 KiB to the job's output, one every 0.1-0.3 ms: slower than a follower
  // reads, so that one that reads each write as it comes makes a chunk of one or two.
  constexpr size_t WRITES = 4000;
  std::atomic<int64_t> writingMicros{0};
  std::thread writer([path = kj::str(job.outputPath()), &writingMicros]() {
    int fd = open(path.cStr(), O_WRONLY | O_APPEND | O_CLOEXEC);
    KJ_ASSERT(fd >= 0, strerror(errno));
    char block[8192];
    memset(block, 'x', sizeof(block));
    auto begin = kj::systemPreciseMonotonicClock().now();
    for (size_t i = 0; i < WRITES; i++) {
      KJ_ASSERT(write(fd, block, sizeof(block)) == sizeof(block));
      usleep(100);
    }
    writingMicros = (kj::systemPreciseMonotonicClock().now() - begin) / kj::MICROSECONDS;
    close(fd);
  });
  auto& timer = h.io.provider->getTimer();
  for (int i = 0; i < 3000 && sink.bytes.size() < WRITES * 8192; i++) {
    timer.afterDelay(10 * kj::MILLISECONDS).wait(h.io.waitScope);
  }
  writer.join();
  job.stop(0 * kj::SECONDS).wait(h.io.waitScope);
  following.wait(h.io.waitScope);
  ASSERT_EQ(sink.bytes.size(), WRITES * 8192);
  for (auto byte : sink.bytes) ASSERT_EQ(byte, 'x');
  // Followed write by write, a chunk holds one or two writes (1,850 to 3,980 chunks seen);
  // gathered, the writes of a pause of 1 to 2 ms: fewer chunks than milliseconds of writing.
  // Unless the host could not keep the writer's pace well within the 1 ms that tells a stream
  // from lines.
  if (writingMicros > int64_t(WRITES) * 500) {
    GTEST_SKIP() << "the writes took " << writingMicros / 1000
                 << " ms: this host is too busy to tell a stream from lines";
  }
  EXPECT_LT(sink.writes * 700, size_t(writingMicros))
      << sink.writes << " chunks for " << writingMicros / 1000 << " ms of writes";
}

// Counts what a follower delivers, keeping none of it.
class CountingSink final : public OutputSink {
 public:
  uint64_t bytes = 0;
  kj::Maybe<JobState> endState;
  kj::Array<kj::byte> buffer;

  kj::ArrayPtr<kj::byte> nextBuffer(size_t size) override {
    buffer = kj::heapArray<kj::byte>(size);
    return buffer;
  }
  kj::Promise<void> write(size_t size) override {
    bytes += size;
    return kj::evalLater([]() {});
  }
  kj::Promise<void> end(const Job& job) override {
    endState = job.record().state;
    return kj::READY_NOW;
  }
};

TEST(Follower, AFollowedStreamIsStillStoppedAtItsOutputLimit) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  // A writer as fast as they come, followed from its start: its follower pauses while the output
  // is far below the limit, and the limit stops it all the same.
  constexpr uint64_t LIMIT = Job::GATHER_LIMIT_MARGIN + (16 << 20);
  StartRequest request;
  request.command = kj::str("/usr/bin/head");
  request.args = kj::arr(kj::str("-c"), kj::str(uint64_t(1) << 30), kj::str("/dev/zero"));
  request.maxOutputBytes = LIMIT;
  auto& job = *h.table->start("alice", kj::mv(request)).wait(h.io.waitScope);
  CountingSink sink;
  followOutput(job, sink, 0, true).wait(h.io.waitScope);
  EXPECT_EQ(sink.endState, JobState::STOPPED);
  EXPECT_EQ(job.record().endReason, EndReason::OUTPUT_LIMIT);
  EXPECT_GE(sink.bytes, LIMIT);
  EXPECT_LT(sink.bytes, LIMIT + (64 << 20));
  EXPECT_EQ(sink.bytes, job.outputBytes());
}

TEST(Follower, OutputIsGatheredOnlyFarBelowItsLimit) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  // The limit is checked at each change of the output, which a pause holds back: a job within
  // GATHER_LIMIT_MARGIN of its limit is never paused, so it is stopped within one write of it.
  StartRequest request;
  request.command = kj::str("/bin/sleep");
  request.args = kj::arr(kj::str("60"));
  request.maxOutputBytes = 1 << 20;
  auto& near = *h.table->start("alice", kj::mv(request)).wait(h.io.waitScope);
  auto atOnce = near.outputGathered(10 * kj::SECONDS);
  EXPECT_TRUE(atOnce.poll(h.io.waitScope));
  auto& far = h.sh("exec sleep 60");
  auto paused = far.outputGathered(10 * kj::SECONDS);
  EXPECT_FALSE(paused.poll(h.io.waitScope));
  near.stop(0 * kj::SECONDS).wait(h.io.waitScope);
  far.stop(0 * kj::SECONDS).wait(h.io.waitScope);
  // An ended job has no watch to pause.
  EXPECT_TRUE(far.outputGathered(10 * kj::SECONDS).poll(h.io.waitScope));
}

TEST(Follower, MissingOutputFileIsAClearError) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("echo gone");
  h.waitEnded(job);
  unlink(job.outputPath().cStr());
  CollectingSink sink;
  auto e = kj::runCatchingExceptions([&]() { followOutput(job, sink, 0, true).wait(h.io.waitScope); });
  ASSERT_TRUE(e != nullptr);
  auto description = KJ_ASSERT_NONNULL(e).getDescription();
  EXPECT_EQ(description,
            kj::str("the output of job ", job.id(), " is not available: No such file or directory"));
  // One line, and nothing of the server's file system.
  EXPECT_EQ(description.findFirst('\n'), nullptr);
  EXPECT_EQ(strstr(description.cStr(), job.outputPath().cStr()), nullptr);
}

}  // namespace
}  // namespace runner

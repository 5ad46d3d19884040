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

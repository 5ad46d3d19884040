#include "runner/follower.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sys/stat.h>
#include <unistd.h>

namespace runner {

namespace {

// A wait at the end of a running job's output that ends sooner than this finds a streaming writer.
constexpr kj::Duration STREAMING_WAIT = 1 * kj::MILLISECONDS;
// How long a follower of a streaming writer lets its output gather before reading on (the event
// loop's timer counts whole milliseconds: 1 to 2 ms).
constexpr kj::Duration GATHER_DELAY = 1 * kj::MILLISECONDS;
// A follower woken by the end of another's pause has waited at least GATHER_DELAY: it reads at
// once rather than pausing again, so that followers of one job cannot keep each other paused.
static_assert(GATHER_DELAY >= STREAMING_WAIT, "a pause must outlast what counts as streaming");

class Follower {
 public:
  Follower(Job& job, OutputSink& sink, uint64_t offset, bool follow)
      : job(job),
        sink(sink),
        fd(openOutput(job)),
        offset(offset),
        follow(follow) {
    ++job.metrics().followers;
  }
  ~Follower() noexcept(false) { --job.metrics().followers; }
  KJ_DISALLOW_COPY(Follower);

  kj::Promise<void> run() {
    // Whether the job had ended before this read: if so, a short read is the true end.
    bool endedBefore = job.hasEnded();
    if (!reachedEnd || endedBefore || !follow) {
      size_t n = readChunk();
      if (n > 0) return deliver(n);
      if (endedBefore || !follow) return sink.end(job);
    }
    // The last chunk was all there was when it was read (a running job's output, live): what
    // came since is found by the look below, after asking to be woken.
    reachedEnd = false;

    // At the end of a running job's output. Ask to be woken first, then look once more, so a
    // write between the last read and the wait cannot be missed.
    auto changed = job.outputChanged();
    size_t n = readChunk();
    if (n > 0) return deliver(n);
    auto waitBegan = job.timer().now();
    return changed.then([this, waitBegan]() -> kj::Promise<void> {
      // Output that came within a moment of the wait is a stream, not a line now and then: a
      // writer writing as fast as it can, a few KiB per write. Following it write by write would
      // wake the event loop and send a message for each (twice the CPU per byte of a finished
      // output, on both ends, taken from the writer); a moment's pause, in which its writes wake
      // nothing, gathers them into full chunks. A line after a quiet spell is read at once.
      if (!job.hasEnded() && job.timer().now() - waitBegan < STREAMING_WAIT) {
        return job.outputGathered(GATHER_DELAY).then([this]() { return run(); });
      }
      return run();
    });
  }

 private:
  Job& job;
  OutputSink& sink;
  kj::AutoCloseFd fd;
  uint64_t offset;
  bool follow;
  // The sink's buffer for the next chunk; empty until asked for, again after each write.
  kj::ArrayPtr<kj::byte> buffer;
  // The last chunk read was shorter than a chunk: it ended where the file did.
  bool reachedEnd = false;

  static kj::AutoCloseFd openOutput(Job& job) {
    int raw;
    KJ_SYSCALL_HANDLE_ERRORS(raw = open(job.outputPath().cStr(), O_RDONLY | O_CLOEXEC)) {
      default:
        // The server's paths are not the client's business: the job id and the reason are.
        KJ_FAIL_REQUIRE(kj::str("the output of job ", job.id(), " is not available: ",
                                strerror(error)));
    }
    return kj::AutoCloseFd(raw);
  }

  size_t readChunk() {
    // No file is this large (4 EiB); an offset beyond what pread() takes reads as the end.
    if (offset >= uint64_t(1) << 62) return 0;
    // A buffer for what is there, up to a chunk: a follower waiting at the end of a quiet job's
    // output holds none, and one that follows a trickle holds a few bytes, not a chunk.
    struct stat st;
    KJ_SYSCALL(fstat(fd, &st), job.id());
    if (uint64_t(st.st_size) <= offset) return 0;
    size_t size = kj::min(uint64_t(st.st_size) - offset, uint64_t(FOLLOWER_CHUNK_BYTES));
    if (buffer.size() != size) buffer = sink.nextBuffer(size);
    ssize_t n;
    KJ_SYSCALL_HANDLE_ERRORS(n = pread(fd, buffer.begin(), buffer.size(), offset)) {
      default:
        KJ_FAIL_REQUIRE(kj::str("cannot read the output of job ", job.id(), ": ",
                                strerror(error)));
    }
    offset += n;
    reachedEnd = n < FOLLOWER_CHUNK_BYTES;
    return n;
  }

  kj::Promise<void> deliver(size_t n) {
    buffer = nullptr;
    job.metrics().followerBytes += n;
    // The next read waits for what is queued on the loop, the message carrying this chunk among
    // it: a live line goes out before the follower looks for the next one.
    return sink.write(n).then([this]() { return kj::evalLast([this]() { return run(); }); });
  }
};

}  // namespace

kj::Promise<void> followOutput(Job& job, OutputSink& sink, uint64_t fromOffset, bool follow) {
  auto follower = kj::heap<Follower>(job, sink, fromOffset, follow);
  auto promise = follower->run();
  return promise.attach(kj::mv(follower));
}

}  // namespace runner

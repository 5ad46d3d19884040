#include "client/log-view.h"

#include <errno.h>
#include <kj/debug.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/exit-status.h"
#include "client/log-lines.h"

namespace runner {
namespace client {

namespace {

int64_t wallMillis() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

// How a stream given to a callback ended: the callback had enough (or stdout went away), or the
// server called `end` (all delivered and, when following, the job ended).
enum class StreamEnd { STOPPED, ENDED };

// An OutputSink that hands each chunk, with its offset, to `onData`, which answers whether it
// wants more. The sink ignores what arrives after that; the caller drops the subscription.
class CallbackSink final : public api::OutputSink::Server {
 public:
  using OnData = kj::Function<kj::Promise<bool>(uint64_t, kj::ArrayPtr<const kj::byte>)>;

  CallbackSink(uint64_t offset, OnData onData, kj::Own<kj::PromiseFulfiller<StreamEnd>> done)
      : offset(offset), onData(kj::mv(onData)), done(kj::mv(done)) {}
  ~CallbackSink() noexcept(false) {
    KJ_IF_MAYBE (fulfiller, done) {
      (*fulfiller)->reject(KJ_EXCEPTION(DISCONNECTED, "the server ended the output stream early"));
    }
  }

 protected:
  kj::Promise<void> write(WriteContext context) override {
    if (done == nullptr) return kj::READY_NOW;
    auto data = context.getParams().getData();
    uint64_t at = offset;
    offset += data.size();
    // `context` holds `data` until the callback is done with it.
    return onData(at, data).then([this, context](bool more) mutable {
      if (!more) finish(StreamEnd::STOPPED);
    });
  }

  kj::Promise<void> end(EndContext) override {
    finish(StreamEnd::ENDED);
    return kj::READY_NOW;
  }

 private:
  uint64_t offset;
  OnData onData;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<StreamEnd>>> done;

  void finish(StreamEnd how) {
    KJ_IF_MAYBE (fulfiller, done) {
      (*fulfiller)->fulfill(kj::mv(how));
      done = nullptr;
    }
  }
};

// Streams the job's output from `from` into `onData` until it wants no more or the stream ends.
StreamEnd readOutput(CommandIo& cmd, api::Job::Client& job, uint64_t from, bool follow,
                     CallbackSink::OnData onData) {
  auto paf = kj::newPromiseAndFulfiller<StreamEnd>();
  auto request = job.watchOutputRequest();
  request.setSink(kj::heap<CallbackSink>(from, kj::mv(onData), kj::mv(paf.fulfiller)));
  request.setFromOffset(from);
  request.setFollow(follow);
  auto subscription = request.send().getHandle();
  auto disconnected = cmd.connection.onDisconnect().then([]() -> StreamEnd {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "lost the connection to the server"));
  });
  // Dropping the subscription as this returns stops the server's follower.
  return paf.promise.exclusiveJoin(kj::mv(disconnected)).wait(cmd.io.waitScope);
}

// Bytes scanned for line starts at once, at first and at most: --tail reads backwards from the
// end in windows that double up to this, keeping only the offsets of the lines it wants.
constexpr uint64_t FIRST_WINDOW = 64 * 1024;
constexpr uint64_t LAST_WINDOW = 4 * 1024 * 1024;

// Where the last `lines` lines that begin in [floor, end) begin; `floor` when there are fewer.
uint64_t findTailStart(CommandIo& cmd, api::Job::Client& job, uint64_t lines, uint64_t floor,
                       uint64_t end) {
  if (lines == 0) return end;
  uint64_t hi = end;
  uint64_t window = FIRST_WINDOW;
  while (hi > floor) {
    uint64_t lo = hi - kj::min(window, hi - floor);
    LineStarts starts(lo, hi, end, lines);
    uint64_t from = lo > 0 ? lo - 1 : 0;
    readOutput(cmd, job, from, false,
               [&starts](uint64_t offset, kj::ArrayPtr<const kj::byte> data) -> kj::Promise<bool> {
                 return starts.feed(offset, data);
               });
    KJ_IF_MAYBE (start, starts.wanted()) {
      return *start;
    }
    lines -= starts.count();
    hi = lo;
    window = kj::min(window * 2, LAST_WINDOW);
  }
  return floor;
}

kj::Array<TimedOffset> fetchTimes(api::Job::OutputTimesResults::Reader results) {
  auto samples = results.getSamples();
  auto copy = kj::heapArray<TimedOffset>(samples.size());
  for (size_t i = 0; i < samples.size(); i++) {
    copy[i] = TimedOffset{samples[i].getOffset(), samples[i].getTimeMillis()};
  }
  return copy;
}

// Writes everything to stdout; false when its reader went away (EPIPE).
bool writeStdoutBytes(kj::ArrayPtr<const kj::byte> data) {
  while (data.size() > 0) {
    ssize_t n = ::write(STDOUT_FILENO, data.begin(), data.size());
    if (n >= 0) {
      data = data.slice(n, data.size());
      continue;
    }
    int error = errno;
    if (error == EINTR) continue;
    if (error == EPIPE) return false;
    if (error == EAGAIN || error == EWOULDBLOCK) {
      struct pollfd pollFd = {STDOUT_FILENO, POLLOUT, 0};
      poll(&pollFd, 1, -1);
      continue;
    }
    kj::throwFatalException(
        KJ_EXCEPTION(FAILED, kj::str("cannot write output: ", strerror(error))));
  }
  return true;
}

}  // namespace

int showLogLines(CommandIo& cmd, api::Job::Client job, const LogsOptions& options) {
  bool needTimes =
      options.timestamps || options.sinceMillis != nullptr || options.untilMillis != nullptr;
  uint64_t end = job.infoRequest().send().wait(cmd.io.waitScope).getInfo().getOutputBytes();
  OutputTimeIndex times;
  if (needTimes) {
    // Asked after the size: the samples cover at least that much.
    times.replace(fetchTimes(job.outputTimesRequest().send().wait(cmd.io.waitScope)));
  }
  uint64_t floor = 0;
  KJ_IF_MAYBE (since, options.sinceMillis) {
    floor = times.offsetSince(*since);
    // What arrived after the size was read may lie past `end`.
    if (floor > end) end = floor;
  }
  uint64_t start = floor;
  KJ_IF_MAYBE (lines, options.tail) {
    start = findTailStart(cmd, job, *lines, floor, end);
  }
  // From the byte before the start, so that a line begun before it is recognised and dropped.
  uint64_t from = start > 0 ? start - 1 : 0;
  LineEditor editor(from, start > 0, options.timestamps, options.untilMillis);
  bool closed = false;
  readOutput(
      cmd, job, from, options.follow,
      [&](uint64_t, kj::ArrayPtr<const kj::byte> data) -> kj::Promise<bool> {
        auto show = [&editor, &times, &closed, data]() -> bool {
          kj::Vector<kj::byte> out(data.size() + 64);
          bool more = editor.feed(data, times, wallMillis(), out);
          if (!writeStdoutBytes(out)) {
            closed = true;
            return false;
          }
          return more;
        };
        KJ_IF_MAYBE (last, editor.lastLineStart(data)) {
          if (times.timeOf(*last) == nullptr) {
            // Newer output than the index knows: ask again (the answer covers all output so far).
            return job.outputTimesRequest().send().then([&times, show](auto&& results) mutable {
              times.replace(fetchTimes(results));
              return show();
            });
          }
        }
        return show();
      });
  return closed ? EXIT_SIGNAL_BASE + SIGPIPE : EXIT_OK;
}

}  // namespace client
}  // namespace runner

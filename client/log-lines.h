#pragma once
// What `runctl logs` does with lines when an option selects or decorates them (--tail, --since,
// --until, -t): the index of when output arrived (Job.outputTimes), the times users type, and
// the editing of the stream into the lines to show. No RPC here: log-view.c++ drives it.

#include <kj/array.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <stdint.h>

namespace runner {
namespace client {

// What `runctl logs` was asked for.
struct LogsOptions {
  bool follow = false;
  // The last this many lines (of those --since selects).
  kj::Maybe<uint64_t> tail;
  // Unix milliseconds: lines whose first byte arrived at or after `since`, at or before `until`.
  kj::Maybe<int64_t> sinceMillis;
  kj::Maybe<int64_t> untilMillis;
  bool timestamps = false;

  bool selectsLines() const {
    return tail != nullptr || sinceMillis != nullptr || untilMillis != nullptr || timestamps;
  }
};

struct TimedOffset {
  uint64_t offset;
  int64_t timeMillis;
};

// A job's Job.outputTimes, looked up by offset.
class OutputTimeIndex {
 public:
  void replace(kj::Array<TimedOffset> samples) { this->samples = kj::mv(samples); }

  // When byte `offset` arrived: the time of the first sample past it; null when none covers it
  // (yet).
  kj::Maybe<int64_t> timeOf(uint64_t offset) const;

  // Where the first output that arrived at `sinceMillis` or later begins; the end of the output
  // the index knows when nothing did.
  uint64_t offsetSince(int64_t sinceMillis) const;

 private:
  kj::Array<TimedOffset> samples;
};

// --since and --until: RFC 3339 ("2026-12-02T02:17:39Z", "2026-12-02T03:17:39.5+01:00") or a
// duration before `nowMillis` ("10s", "5m", "1h30m"). Null for anything else.
kj::Maybe<int64_t> parseLogTime(kj::StringPtr text, int64_t nowMillis);

// Turns a stream of output, fed in order, into the lines to show: with `skipToLine`, what comes
// before the first line that begins after the stream's first byte is dropped (the stream starts
// one byte before the wanted start, whose line may have begun earlier); with `timestamps`, each
// line begins with the time its first byte arrived (RFC 3339, milliseconds, UTC) and a space;
// with `untilMillis`, the first line that arrived later ends the stream. Bytes are kept as they
// are otherwise.
class LineEditor {
 public:
  LineEditor(uint64_t offset, bool skipToLine, bool timestamps, kj::Maybe<int64_t> untilMillis);

  // Whether feeding `data` needs times the index may not have: the offset of the last line that
  // begins in it (null when none does or no time is needed).
  kj::Maybe<uint64_t> lastLineStart(kj::ArrayPtr<const kj::byte> data) const;

  // Appends to `out` what to show of `data` (the next bytes of the stream). A line whose time
  // the index does not know gets `fallbackMillis`. False once the stream is over (--until).
  bool feed(kj::ArrayPtr<const kj::byte> data, const OutputTimeIndex& times, int64_t fallbackMillis,
            kj::Vector<kj::byte>& out);

 private:
  uint64_t offset;
  bool skipping;
  bool atLineStart;
  bool timestamps;
  kj::Maybe<int64_t> untilMillis;
  bool over = false;
};

// The line starts in [lo, hi) of a job's output, scanned in order from byte lo - 1 (or 0), of
// which only the last `want` are kept (memory: at most `want` offsets). A start is a byte that
// follows a newline, or byte 0; `end`, the end of the output, is never one.
class LineStarts {
 public:
  LineStarts(uint64_t lo, uint64_t hi, uint64_t end, size_t want);

  // The next bytes, at `offset`; false once past `hi`.
  bool feed(uint64_t offset, kj::ArrayPtr<const kj::byte> data);

  // How many starts the range held, and the `want`-th from the last (when there were as many).
  uint64_t count() const { return found; }
  kj::Maybe<uint64_t> wanted() const;

 private:
  uint64_t lo, hi, end;
  size_t want;
  kj::Array<uint64_t> ring;
  uint64_t found = 0;
};

}  // namespace client
}  // namespace runner

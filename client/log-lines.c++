#include "client/log-lines.h"

#include <string.h>
#include <time.h>

#include "client/job-format.h"
#include "client/quantities.h"

namespace runner {
namespace client {

kj::Maybe<int64_t> OutputTimeIndex::timeOf(uint64_t offset) const {
  // The first sample whose offset is greater than `offset`.
  size_t lo = 0, hi = samples.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (samples[mid].offset > offset) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  if (lo == samples.size()) return nullptr;
  return samples[lo].timeMillis;
}

uint64_t OutputTimeIndex::offsetSince(int64_t sinceMillis) const {
  // Times do not decrease: the first sample at or after `sinceMillis`; its bytes begin where the
  // one before it ends.
  size_t lo = 0, hi = samples.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (samples[mid].timeMillis >= sinceMillis) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  if (lo == 0) return 0;
  return samples[lo - 1].offset;
}

namespace {

// Exactly `width` digits at `text[pos]`.
kj::Maybe<int> digits(kj::StringPtr text, size_t& pos, size_t width) {
  if (pos + width > text.size()) return nullptr;
  int value = 0;
  for (size_t i = 0; i < width; i++) {
    char c = text[pos + i];
    if (c < '0' || c > '9') return nullptr;
    value = value * 10 + (c - '0');
  }
  pos += width;
  return value;
}

bool expect(kj::StringPtr text, size_t& pos, kj::StringPtr choices) {
  if (pos >= text.size() || strchr(choices.cStr(), text[pos]) == nullptr) return false;
  pos++;
  return true;
}

kj::Maybe<int64_t> parseRfc3339(kj::StringPtr text) {
  size_t pos = 0;
  int year, month, day, hour, minute, second;
  // clang-format off
  KJ_IF_MAYBE (v, digits(text, pos, 4)) { year = *v; } else { return nullptr; }
  if (!expect(text, pos, "-")) return nullptr;
  KJ_IF_MAYBE (v, digits(text, pos, 2)) { month = *v; } else { return nullptr; }
  if (!expect(text, pos, "-")) return nullptr;
  KJ_IF_MAYBE (v, digits(text, pos, 2)) { day = *v; } else { return nullptr; }
  if (!expect(text, pos, "Tt ")) return nullptr;
  KJ_IF_MAYBE (v, digits(text, pos, 2)) { hour = *v; } else { return nullptr; }
  if (!expect(text, pos, ":")) return nullptr;
  KJ_IF_MAYBE (v, digits(text, pos, 2)) { minute = *v; } else { return nullptr; }
  if (!expect(text, pos, ":")) return nullptr;
  KJ_IF_MAYBE (v, digits(text, pos, 2)) { second = *v; } else { return nullptr; }
  // clang-format on
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return nullptr;
  }
  int64_t millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    pos++;
    size_t first = pos;
    int64_t scale = 100;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      millis += (text[pos] - '0') * scale;
      scale /= 10;
      pos++;
    }
    if (pos == first) return nullptr;
  }
  int64_t offsetMinutes = 0;
  if (expect(text, pos, "Zz")) {
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    pos++;
    int offsetHours, offsetMins;
    // clang-format off
    KJ_IF_MAYBE (v, digits(text, pos, 2)) { offsetHours = *v; } else { return nullptr; }
    if (!expect(text, pos, ":")) return nullptr;
    KJ_IF_MAYBE (v, digits(text, pos, 2)) { offsetMins = *v; } else { return nullptr; }
    // clang-format on
    if (offsetHours > 23 || offsetMins > 59) return nullptr;
    offsetMinutes = sign * (offsetHours * 60 + offsetMins);
  } else {
    return nullptr;
  }
  if (pos != text.size()) return nullptr;
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t seconds = timegm(&tm);
  return (seconds - offsetMinutes * 60) * 1000 + millis;
}

}  // namespace

kj::Maybe<int64_t> parseLogTime(kj::StringPtr text, int64_t nowMillis) {
  KJ_IF_MAYBE (ago, parseDuration(text)) {
    return nowMillis - int64_t(*ago);
  }
  return parseRfc3339(text);
}

LineEditor::LineEditor(uint64_t offset, bool skipToLine, bool timestamps,
                       kj::Maybe<int64_t> untilMillis)
    : offset(offset),
      skipping(skipToLine),
      atLineStart(!skipToLine),
      timestamps(timestamps),
      untilMillis(untilMillis) {}

kj::Maybe<uint64_t> LineEditor::lastLineStart(kj::ArrayPtr<const kj::byte> data) const {
  if (!timestamps && untilMillis == nullptr) return nullptr;
  if (data.size() == 0) return nullptr;
  // A newline at the very end starts a line only with the next bytes.
  for (size_t i = data.size() - 1; i > 0; i--) {
    if (data[i - 1] == '\n') return offset + i;
  }
  if (atLineStart && !skipping) return offset;
  return nullptr;
}

bool LineEditor::feed(kj::ArrayPtr<const kj::byte> data, const OutputTimeIndex& times,
                      int64_t fallbackMillis, kj::Vector<kj::byte>& out) {
  if (over) return false;
  const kj::byte* p = data.begin();
  const kj::byte* end = data.end();
  while (p < end) {
    if (skipping) {
      auto newline = reinterpret_cast<const kj::byte*>(memchr(p, '\n', end - p));
      if (newline == nullptr) {
        p = end;
        break;
      }
      p = newline + 1;
      skipping = false;
      atLineStart = true;
      continue;
    }
    if (atLineStart) {
      uint64_t at = offset + (p - data.begin());
      if (timestamps || untilMillis != nullptr) {
        int64_t time = times.timeOf(at).orDefault(fallbackMillis);
        KJ_IF_MAYBE (until, untilMillis) {
          if (time > *until) {
            over = true;
            offset += data.size();
            return false;
          }
        }
        if (timestamps) {
          auto text = formatRfc3339(time).orDefault(kj::str(time));
          out.addAll(text.asBytes());
          out.add(' ');
        }
      }
      atLineStart = false;
    }
    auto newline = reinterpret_cast<const kj::byte*>(memchr(p, '\n', end - p));
    const kj::byte* stop = newline == nullptr ? end : newline + 1;
    out.addAll(p, stop);
    p = stop;
    if (newline != nullptr) atLineStart = true;
  }
  offset += data.size();
  return true;
}

LineStarts::LineStarts(uint64_t lo, uint64_t hi, uint64_t end, size_t want)
    : lo(lo),
      hi(hi),
      end(end),
      want(want),
      ring(kj::heapArray<uint64_t>(
          size_t(kj::max(kj::min(uint64_t(want), hi - lo + 1), uint64_t(1))))) {}

bool LineStarts::feed(uint64_t offset, kj::ArrayPtr<const kj::byte> data) {
  for (size_t i = 0; i < data.size(); i++) {
    // Byte `offset + i` is a newline: a line starts right after it.
    uint64_t start;
    if (offset == 0 && i == 0 && lo == 0) {
      start = 0;
      if (start < hi && start != end) ring[found++ % ring.size()] = start;
    }
    if (data[i] != '\n') continue;
    start = offset + i + 1;
    if (start < lo) continue;
    if (start >= hi) return false;
    if (start == end) continue;
    ring[found++ % ring.size()] = start;
  }
  return offset + data.size() < hi;
}

kj::Maybe<uint64_t> LineStarts::wanted() const {
  if (want == 0 || found < want) return nullptr;
  return ring[(found - want) % ring.size()];
}

}  // namespace client
}  // namespace runner

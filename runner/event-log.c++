#include "runner/event-log.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <kj/vector.h>

namespace runner {

int64_t nowMillis() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

namespace {

// User-supplied text (commands, names, error messages) reaches the log; a newline or an escape
// sequence in it must not forge a line or repaint a terminal. Control bytes become \xNN.
kj::String escapeControl(kj::StringPtr text) {
  bool clean = true;
  for (char c : text) clean = clean && !(kj::byte(c) < 0x20 || c == 0x7f);
  if (clean) return kj::str(text);
  kj::Vector<char> out(text.size() + 16);
  for (char c : text) {
    if (kj::byte(c) < 0x20 || c == 0x7f) {
      const char* hex = "0123456789abcdef";
      out.addAll(kj::StringPtr("\\x"));
      out.add(hex[kj::byte(c) >> 4]);
      out.add(hex[kj::byte(c) & 0xf]);
    } else {
      out.add(c);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

}  // namespace

void EventLog::write(kj::StringPtr text) {
  int64_t millis = nowMillis();
  time_t seconds = millis / 1000;
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char stamp[40];
  size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(stamp + n, sizeof(stamp) - n, ".%03dZ ", int(millis % 1000));
  auto line = kj::str(stamp, escapeControl(text), "\n");
  // A log line that cannot be written is not worth failing a request for.
  ssize_t ignored KJ_UNUSED = ::write(fd, line.begin(), line.size());
}

}  // namespace runner

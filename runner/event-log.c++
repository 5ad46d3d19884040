#include "runner/event-log.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "runner/printable.h"

namespace runner {

int64_t nowMillis() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

void EventLog::write(kj::StringPtr text) {
  int64_t millis = nowMillis();
  time_t seconds = millis / 1000;
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char stamp[40];
  size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(stamp + n, sizeof(stamp) - n, ".%03dZ ", int(millis % 1000));
  // User-supplied text (commands, names, error messages) reaches the log: a newline or an escape
  // sequence in it must not forge a line or repaint a terminal, and a 1 MiB command must not make
  // a 1 MiB line.
  auto line = kj::str(stamp, printable(text, MAX_LOG_LINE_BYTES), "\n");
  // A log line that cannot be written is not worth failing a request for.
  ssize_t ignored KJ_UNUSED = ::write(fd, line.begin(), line.size());
}

}  // namespace runner

#pragma once
// EventLog: runnerd's one-line-per-event log (jobs started, ended and stopped, refused
// handshakes, permission denials), written to a descriptor (stderr in runnerd).

#include <kj/async.h>
#include <kj/string.h>
#include <stdint.h>

namespace runner {

// What one log line shows of its text at most; the rest is cut, with "...".
constexpr size_t MAX_LOG_LINE_BYTES = 2048;

class EventLog {
 public:
  // Writes to `fd`, which the caller keeps open.
  explicit EventLog(int fd) : fd(fd) {}
  KJ_DISALLOW_COPY(EventLog);

  // Writes "<UTC time> <text>\n" in one write(2), so lines of concurrent writers never mix.
  void write(kj::StringPtr text);

  template <typename... Params>
  void operator()(Params&&... params) {
    write(kj::str(kj::fwd<Params>(params)...));
  }

 private:
  int fd;
};

// Logs the failures of a TaskSet's tasks as "<what>: <description>": background work of the
// server (a job's end, a connection) fails alone and is logged, never fatal.
class LoggedTaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  LoggedTaskErrors(EventLog& log, kj::StringPtr what) : log(log), what(what) {}
  void taskFailed(kj::Exception&& exception) override {
    log(what, ": ", exception.getDescription());
  }

 private:
  EventLog& log;
  kj::StringPtr what;
};

// Unix time in milliseconds.
int64_t nowMillis();

}  // namespace runner

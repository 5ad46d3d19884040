#pragma once
// runctl as end-to-end tests run it: the real binary, a child process of the test, talking to a
// RunnerdFixture with one of the fixture's users' certificates, its stdout and stderr captured.

#include <kj/io.h>
#include <kj/string.h>
#include <sys/types.h>

#include <string>

#include "tests/runnerd-fixture.h"

namespace runner::testing {

// How runctl is invoked: as which user, against which server, with or without credentials.
struct RunctlOptions {
  // Whose certificate and key runctl presents: one the fixture issued (alice, bob, admin, or any
  // user given to RunnerdFixture::issue()).
  kj::StringPtr user = "alice";
  // HOST:PORT for RUNCTL_SERVER; the fixture's runnerd when null.
  kj::Maybe<kj::StringPtr> server;
  // When false, RUNCTL_CERT, RUNCTL_KEY and RUNCTL_CA are left unset.
  bool credentials = true;
};

// What a finished runctl left behind.
struct RunctlResult {
  // The exit status as a shell shows it: the code, or 128+N when killed by signal N.
  int status;
  std::string out;
  std::string err;
};

// One runctl process. Its stdin is /dev/null; its stdout and stderr are pipes that this object
// drains together, so a runctl writing megabytes to either never blocks on the other. Killed and
// reaped if still running when destroyed.
class RunctlProcess {
 public:
  RunctlProcess(RunnerdFixture& fixture, kj::ArrayPtr<const kj::StringPtr> args,
                const RunctlOptions& options = RunctlOptions());
  ~RunctlProcess() noexcept(false);
  KJ_DISALLOW_COPY(RunctlProcess);

  // Reads until stdout holds `marker` (keeping stderr drained meanwhile). Fails if stdout ends
  // first.
  void readStdoutUntil(kj::StringPtr marker);

  // Sends signal `number` to runctl.
  void signal(int number);

  // Closes this end of runctl's stdout, as `| head -1` does once it has its line.
  void closeStdout();

  // Reads stdout and stderr to their end and reaps runctl. Call once.
  RunctlResult finish();

 private:
  pid_t pid = 0;
  kj::AutoCloseFd outPipe;
  kj::AutoCloseFd errPipe;
  bool outOpen = true;
  bool errOpen = true;
  std::string outText;
  std::string errText;

  // Waits until stdout or stderr is readable and appends what they hold, noting their ends.
  void readSome();
};

// Runs runctl to its end.
RunctlResult runctl(RunnerdFixture& fixture, kj::ArrayPtr<const kj::StringPtr> args,
                    const RunctlOptions& options = RunctlOptions());

}  // namespace runner::testing

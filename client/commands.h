#pragma once
// What each runctl command does once its command line is parsed: the RPC calls to runnerd and
// what goes to stdout. Each returns runctl's exit code and throws for failures (bad request,
// permission denied, connection lost); runctl.c++ prints those as one line.

#include <kj/async-io.h>
#include <stdint.h>

#include "client/connection.h"
#include "client/log-lines.h"
#include "schema/runner.capnp.h"

namespace runner {
namespace client {

// The event loop and connection a command runs on.
struct CommandIo {
  kj::AsyncIoContext& io;
  ServerConnection& connection;
};

// Starts a job; prints its id, or with `json` its JobInfo. A command that could not be started
// is still a job (state failed): its id is printed, its error goes to stderr, and the exit code
// is 1.
int startJob(CommandIo& cmd, api::JobSpec::Reader spec, bool json);

// Starts a job and streams its output to stdout in the same round trip, until it ends; returns
// the job's exit code (exit-status.h). The first SIGINT or SIGTERM stops the job (with the
// server's default grace period) and keeps streaming until it has ended; a second one leaves at
// once. The caller must have captured both signals (kj::UnixEventPort::captureSignal) before
// setting up the event loop.
int runJob(CommandIo& cmd, api::JobSpec::Reader spec);

// Writes the job's output from byte 0 to stdout; with `follow`, keeps going until the job ends.
// Unless `options` select or decorate lines (log-view.h), the bytes are written as they are.
int showLogs(CommandIo& cmd, kj::StringPtr id, const LogsOptions& options);

// The commands that take several ids ask about all of them at once and answer in the order
// given; a job that cannot be asked about (not found, not allowed) gets one error line on stderr
// and the others go on.

// Prints each job's metadata: formatStatus() (a blank line between jobs) or, with `json`, its
// JSON (one object per line). Returns 1 if any job failed, else 0.
int showStatus(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, bool json);

// Waits for every job to end; prints nothing, or with `json` each final JobInfo (one per line).
// Returns the first non-zero exit code (runJob()'s) in the order given, 125 for a job that could
// not be waited for, or 0 when every job exited 0.
int waitJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, bool json);

// Stops each job (SIGTERM, then SIGKILL after the grace period; 0 = the server's default) and
// prints "ID OUTCOME". Returns 1 if any job failed, else 0.
int stopJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, uint32_t graceMillis);

// Prints the user this connection is authenticated as, and " (admin)" for an admin; with `json`,
// {"user":USER,"admin":BOOL}.
int showIdentity(CommandIo& cmd, bool json);

// For shell completion: prints the ids of the caller's jobs and the names of those that have one,
// one per line.
int printJobIds(CommandIo& cmd);

// Sends `signal` to every process of each job and prints its id. Goes on past a job that cannot
// be signalled (ended, not found, not the caller's), with one error line for it on stderr;
// returns 1 if any could not be, else 0.
int signalJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, int signal);


// What `runctl list` selects and how it prints it.
struct ListOptions {
  // Every user's jobs, not only the caller's.
  bool allUsers = false;
  // Empty: any state.
  kj::Vector<api::State> states;
  // Empty: any name.
  kj::StringPtr name;
  // "KEY=VALUE" each, with a '=': only jobs with all of these labels.
  kj::Vector<kj::StringPtr> labels;
  // The newest this many; 0: all.
  uint32_t limit = 0;
  // A JSON array instead of the table.
  bool json = false;
  // Only the ids, one per line.
  bool quiet = false;
};

// Prints the jobs `options` selects as a table, a JSON array or a list of ids.
int listJobs(CommandIo& cmd, const ListOptions& options);

// Removes each job (record and output; with `force`, a running one is stopped first, with
// `graceMillis` as stopJob() takes it) and prints its id. Goes on past a job that cannot be
// removed, with one error line for it on stderr; returns 1 if any could not be, else 0.
int removeJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, bool force,
               uint32_t graceMillis);

// Removes the caller's ended jobs (every user's with `allUsers`) that ended at least
// `olderThanMillis` ago, and prints "removed N jobs, freed SIZE".
int pruneJobs(CommandIo& cmd, uint64_t olderThanMillis, bool allUsers);

// Writes all of `text` to stdout.
void writeStdout(kj::StringPtr text);

// Writes "runctl: MESSAGE\n" to stderr, MESSAGE escaped for the terminal (terminal-text.h): it
// may quote what the server sent (a job's error, an id).
void writeError(kj::StringPtr message);

}  // namespace client
}  // namespace runner

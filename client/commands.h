#pragma once
// What each runctl command does once its command line is parsed: the RPC calls to runnerd and
// what goes to stdout. Each returns runctl's exit code and throws for failures (bad request,
// permission denied, connection lost); runctl.c++ prints those as one line.

#include <kj/async-io.h>
#include <stdint.h>

#include "client/connection.h"
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
int showLogs(CommandIo& cmd, kj::StringPtr id, bool follow);

// Prints the job's metadata: formatStatus() or, with `json`, its JSON.
int showStatus(CommandIo& cmd, kj::StringPtr id, bool json);

// Waits for the job to end; prints nothing, or with `json` the final JobInfo. Returns the job's
// exit code like runJob().
int waitJob(CommandIo& cmd, kj::StringPtr id, bool json);

// Stops the job (SIGTERM, then SIGKILL after the grace period; 0 = the server's default) and
// prints "ID OUTCOME".
int stopJob(CommandIo& cmd, kj::StringPtr id, uint32_t graceMillis);

// Sends `signal` to every process of each job and prints its id. Goes on past a job that cannot
// be signalled (ended, not found, not the caller's), with one error line for it on stderr;
// returns 1 if any could not be, else 0.
int signalJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, int signal);

// Prints the caller's jobs (every user's with `allUsers`) as a table or a JSON array.
int listJobs(CommandIo& cmd, bool allUsers, bool json);

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

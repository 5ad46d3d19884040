#pragma once
// JobRecord: everything runner knows about one job, as plain data.
//
// The job table keeps one per job, the store persists them, and the RPC layer converts them
// to and from the schema's JobInfo in one place (rpc-convert.h).

#include <kj/array.h>
#include <kj/string.h>
#include <stdint.h>
#include <sys/types.h>

#include "executors/executor.h"
#include "runner/output-times.h"

namespace runner {

enum class JobState : uint8_t {
  RUNNING,
  EXITED,   // the main process exited; see exitCode
  KILLED,   // the main process died of a signal that did not come from a stop
  STOPPED,  // a user stopped it
  FAILED,   // could not be started; see error
  LOST,     // the server went away while it ran and could not follow it to its end
};

// Why a job was stopped (see schema/runner.capnp's EndReason): set only on `stopped` jobs.
enum class EndReason : uint8_t {
  NONE,
  STOPPED,       // a user's stop (or remove --force)
  TIMEOUT,       // timeoutMillis passed since its start
  IDLE_TIMEOUT,  // no output for idleTimeoutMillis
  OUTPUT_LIMIT,  // its output reached maxOutputBytes
};

kj::StringPtr endReasonName(EndReason reason);
kj::Maybe<EndReason> parseEndReason(kj::StringPtr name);

kj::StringPtr stateName(JobState state);
kj::Maybe<JobState> parseState(kj::StringPtr name);

inline bool hasEnded(JobState state) {
  return state != JobState::RUNNING;
}

// A KEY=VALUE tag of a job (see schema/runner.capnp's JobSpec.labels).
struct JobLabel {
  kj::String key;
  kj::String value;
};

struct JobRecord {
  kj::String id;  // random UUID
  kj::String owner;
  kj::String command;
  kj::Array<kj::String> args;
  kj::String workingDir;
  kj::String executor;

  JobState state = JobState::RUNNING;
  int exitCode = 0;
  int termSignal = 0;
  bool oomKilled = false;
  bool oomKilledMain = false;
  kj::String error;

  // Unix time in milliseconds; 0 when it has not happened.
  int64_t createdAt = 0;
  int64_t startedAt = 0;
  int64_t endedAt = 0;

  executors::Limits limits;
  executors::Isolation isolation;
  executors::Usage usage;
  executors::Placement placement;

  // The main process while it runs: its pid and its start time in clock ticks since boot
  // (field 22 of /proc/PID/stat), which tells a restarted server whether that pid is still
  // the same process.
  pid_t pid = 0;
  uint64_t pidStartTime = 0;

  // The identity the job ran as (0 for a job that failed before one was chosen, or stored by a
  // runnerd that did not record it).
  uint32_t uid = 0;
  uint32_t gid = 0;

  // The most output the job may write (0: recorded before limits existed), and once it has
  // ended, what it wrote (UNKNOWN_OUTPUT_BYTES: ended before that was recorded).
  uint64_t maxOutputBytes = 0;
  uint64_t outputBytes = UNKNOWN_OUTPUT_BYTES;
  static constexpr uint64_t UNKNOWN_OUTPUT_BYTES = ~uint64_t(0);

  // Empty: none. Unique among the owner's jobs in the table (job-names.h says what it may be).
  kj::String name;
  kj::Array<JobLabel> labels;
  // The spec's timeouts (0: none): the job is stopped timeoutMillis after startedAt, or once its
  // output has not been written to for idleTimeoutMillis. A restarted server arms them again
  // from these, startedAt and the output file's modification time.
  uint64_t timeoutMillis = 0;
  uint64_t idleTimeoutMillis = 0;
  EndReason endReason = EndReason::NONE;
  // When its output arrived (output-times.h), once it has ended; a running job's are in memory.
  kj::Array<OutputSample> outputTimes;

  JobRecord clone() const;
};

}  // namespace runner

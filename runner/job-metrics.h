#pragma once
// JobMetrics: what the job table and the followers count for runnerd's metrics (see
// runner/metrics-http.h). Plain integers, read and written on the event loop's thread only.

#include <kj/map.h>
#include <kj/string.h>
#include <stdint.h>

#include "runner/job-record.h"
#include "runner/metrics.h"

namespace runner {

// How a job ended, for runner_job_ends_total: its state, except that a job the kernel's OOM
// killer hit (any process of it) counts as `oom`.
enum class EndCause : uint8_t { EXITED, KILLED, STOPPED, FAILED, LOST, OOM };
constexpr size_t END_CAUSES = 6;
kj::StringPtr endCauseName(EndCause cause);
EndCause endCauseOf(const JobRecord& record);

constexpr size_t JOB_STATES = 6;

struct JobMetrics {
  // Jobs in the table (running, and the ended ones retention keeps) by executor, then by state
  // (JobState's order). Kept as jobs come, change state and are forgotten: a scrape costs the
  // number of executors, not of jobs.
  struct ByState {
    int64_t count[JOB_STATES] = {};
  };
  kj::HashMap<kj::String, ByState> jobs;
  // Jobs started by this runnerd (failed starts included), by executor.
  kj::HashMap<kj::String, uint64_t> starts;
  // Jobs ended since this runnerd started, by EndCause.
  uint64_t ends[END_CAUSES] = {};
  // From a start request to its job running (its record on disk), for jobs that run.
  Histogram startLatency{START_LATENCY_BOUNDS};
  // Output readers at work (logs, logs -f, run), and the bytes they handed to clients.
  int64_t followers = 0;
  uint64_t followerBytes = 0;

  // Counts a job of `executor` in `state` in (+1) or out (-1) of `jobs`.
  void count(kj::StringPtr executor, JobState state, int delta);
};

}  // namespace runner

#pragma once
// The one place where the wire types of schema/runner.capnp meet runner's plain structs.

#include "runner/job-table.h"
#include "schema/runner.capnp.h"

namespace runner {

// Largest accepted spec, so that one request cannot make the server build an absurd process.
constexpr size_t MAX_ARGS = 4096;
constexpr size_t MAX_ENV = 1024;
// Bytes of command, arguments, environment and working directory together: Linux's own limit
// for exec's arguments and environment is 2 MiB (a quarter of the default stack).
constexpr size_t MAX_SPEC_BYTES = 1024 * 1024;

void fillJobInfo(api::JobInfo::Builder info, const Job& job);
// ... with `live` (Job::usageSoFar()) as the usage of a job that still runs.
void fillJobInfo(api::JobInfo::Builder info, const Job& job, const executors::Usage& live);

// Translates and checks a spec. Throws a clear error for what can never run (bad limits, too
// many arguments); the job table checks the rest (command, executor, environment).
StartRequest toStartRequest(api::JobSpec::Reader spec);

// Labels as the table takes them; throws past MAX_JOB_LABELS (the table checks the rest).
kj::Array<JobLabel> toLabels(capnp::List<api::Label>::Reader labels);

api::State toApiState(JobState state);
api::EndReason toApiEndReason(EndReason reason);
// Throws for a state this server does not know.
JobState fromApiState(api::State state);

}  // namespace runner

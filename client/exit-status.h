#pragma once
// runctl's exit codes. `run` and `wait` exit like `docker run`: with the job's own exit code,
// 128+N when a signal N ended it, 127 when it could not be started and 125 when runctl or the
// server failed. Every other command exits 0, 1 on failure, 2 on a usage error.

#include "schema/runner.capnp.h"

namespace runner {
namespace client {

constexpr int EXIT_OK = 0;
constexpr int EXIT_FAILED = 1;
constexpr int EXIT_USAGE = 2;
constexpr int EXIT_RUNCTL_FAILED = 125;
constexpr int EXIT_CANNOT_START = 127;
constexpr int EXIT_SIGNAL_BASE = 128;

// How `run` and `wait` exit for a job in this state:
// exited → its exit code; killed → 128+signal; stopped → 128+signal, or its exit code when it
// exited by itself during the grace period; failed → 127; lost (or still running) → 125.
int jobExitCode(api::JobInfo::Reader info);

}  // namespace client
}  // namespace runner

#pragma once
// The one place where the wire types of schema/executor.capnp meet the plain structs of
// executors/executor.h, in both directions.

#include "executors/executor.h"
#include "schema/executor.capnp.h"

namespace runner::executor_rpc {

// Largest launch request accepted, in words: a request carries at most runner.capnp's spec
// (1 MiB of command, arguments and environment) and a few names.
constexpr uint64_t MAX_MESSAGE_WORDS = 4 * 1024 * 1024 / sizeof(capnp::word);

// Fills `out` from `request`, except the output descriptor, which travels as a capability.
void fillLaunchRequest(wire::LaunchRequest::Builder out, const executors::LaunchRequest& request);
// The request `in` describes, with `outputFd` (borrowed) as its output.
executors::LaunchRequest toLaunchRequest(wire::LaunchRequest::Reader in, int outputFd);

void fillPlacement(wire::Placement::Builder out, const executors::Placement& placement);
executors::Placement toPlacement(wire::Placement::Reader in);

void fillUsage(wire::Usage::Builder out, const executors::Usage& usage);
executors::Usage toUsage(wire::Usage::Reader in);

void fillExitStatus(wire::ExitStatus::Builder out, const executors::ExitStatus& status);
executors::ExitStatus toExitStatus(wire::ExitStatus::Reader in);

}  // namespace runner::executor_rpc

#pragma once
// `runctl logs` with options that select or decorate lines: --tail, --since, --until and -t.
// Without them `logs` streams the output byte for byte (commands.c++).

#include <kj/async.h>
#include <stdint.h>

#include "client/commands.h"
#include "client/log-lines.h"

namespace runner {
namespace client {

// Writes the lines `options` select of the job's output to stdout; with `follow`, keeps going
// until the job ends (or, with an until, until a line arrived after it). Returns runctl's exit
// code: 0, or 141 when stdout's reader went away.
int showLogLines(CommandIo& cmd, api::Job::Client job, const LogsOptions& options);

}  // namespace client
}  // namespace runner

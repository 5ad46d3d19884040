#pragma once
// How runctl shows jobs: the multi-line `status`, the one-line outcome `stop` prints, the `list`
// table, and the JSON forms.
//
// The JSON forms are capnp::JsonCodec's encoding of JobInfo (field names as in the schema, enums
// by name) with two changes, made by codec handlers: every integer is a JSON number (JsonCodec
// writes 64-bit ones as strings; counts here stay far below 2^53, where numbers are exact), and
// a time (an Int64 field whose name ends in "At": Unix milliseconds) is an RFC 3339 string in UTC
// with milliseconds, "2026-12-02T01:02:03.456Z", or null when not set (0), followed by the same
// time as the number of Unix milliseconds under the name plus "Millis" (createdAtMillis).
//
// Every text field of a job that the human-readable forms show is escaped for the terminal (see
// terminal-text.h); the JSON forms are left to JSON's own escaping.

#include <kj/string.h>
#include <stdint.h>

#include "schema/runner.capnp.h"

namespace runner {
namespace client {

// "running", "exited with code 3", "killed by SIGKILL", "stopped by SIGTERM", "failed: ERROR", ...
kj::String describeOutcome(api::JobInfo::Reader info);

// `runctl status`: one "Label: value" line per fact, newline-terminated.
kj::String formatStatus(api::JobInfo::Reader info);

// `runctl list`: a header and one row per job (ID, OWNER, STATE, EXIT, CREATED, COMMAND),
// columns padded to their widest cell (in characters, after escaping), newline-terminated.
kj::String formatJobTable(capnp::List<api::JobInfo>::Reader jobs);

// One JSON object / array on one line, newline-terminated.
kj::String jobInfoJson(api::JobInfo::Reader info);
kj::String jobListJson(capnp::List<api::JobInfo>::Reader jobs);

// Reads back what jobInfoJson() wrote (the times from their "Millis" twins).
void decodeJobInfoJson(kj::ArrayPtr<const char> json, api::JobInfo::Builder info);

// Unix milliseconds as RFC 3339 in UTC with milliseconds: 0 → "1970-01-01T00:00:00.000Z".
// Null for a time outside the years 0000 to 9999, which RFC 3339 cannot write.
kj::Maybe<kj::String> formatRfc3339(int64_t unixMillis);

// "SIGTERM" (or "signal 70" for a number without a name).
kj::String signalName(int signal);

// "512 B", "64 MiB", "1.5 GiB".
kj::String formatSize(uint64_t bytes);

// Thousandths of a core as a number of cores: 500 → "0.5", 2000 → "2", 1250 → "1.25".
kj::String formatCores(uint32_t millicores);

// Milliseconds as "1.234s", "2m03.500s", "1h02m03.000s".
kj::String formatMillis(uint64_t millis);

// Unix milliseconds as local "YYYY-MM-DD HH:MM:SS"; "-" for 0.
kj::String formatTime(int64_t unixMillis);

// The command and its arguments as one shell-quoted line: sh -c 'echo hi'. A word with anything
// escapeForTerminal() escapes (but backslashes) is written in bash's $'...' form with those
// escapes: sh -c $'echo a\necho b'.
kj::String formatCommandLine(kj::StringPtr command, capnp::List<capnp::Text>::Reader args);

}  // namespace client
}  // namespace runner

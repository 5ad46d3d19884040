#pragma once
// What a user may call a job and tag it with (JobSpec.name and JobSpec.labels in
// schema/runner.capnp), and how the text a user gives for a job is told apart: a full id, a name,
// or a prefix of an id.
//
// A name is never made only of hexadecimal digits and dashes, the characters of an id, so that
// no name can be mistaken for an id or a prefix of one whatever the order they are tried in.

#include <kj/string.h>

#include "runner/job-record.h"

namespace runner {

// The bounds README's Limits section names.
constexpr size_t MAX_JOB_NAME_CHARS = 64;
constexpr size_t MAX_JOB_LABELS = 32;
constexpr size_t MAX_LABEL_KEY_CHARS = 64;
constexpr size_t MAX_LABEL_VALUE_BYTES = 256;
// The shortest id prefix that names a job: shorter ones would match many jobs of a busy server.
constexpr size_t MIN_ID_PREFIX_CHARS = 4;
// The most matching ids an "ambiguous prefix" error lists.
constexpr size_t MAX_PREFIX_CANDIDATES = 8;

// Throw a one-line error quoting the offending text (printable()) for what is not allowed.
void requireValidJobName(kj::StringPtr name);
// Also refuses a key given twice.
void requireValidLabels(kj::ArrayPtr<const JobLabel> labels);

// Whether `text` is made only of the characters of a job id (lowercase hexadecimal digits and
// dashes), so that it may be a prefix of one.
bool looksLikeIdPrefix(kj::StringPtr text);

}  // namespace runner

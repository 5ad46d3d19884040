#pragma once
// Resolving the unprivileged user that jobs run as.

#include "executors/executor.h"

struct passwd;

namespace runner {

// The uid, gid, supplementary groups (getgrouplist), name and home of an account.
executors::Credentials credentialsOf(const struct passwd& pw);

// The uid, gid, supplementary groups and home of `userName`. Throws a one-line error for an
// unknown user and refuses root (uid or gid 0): jobs never run as root.
executors::Credentials resolveRunAs(kj::StringPtr userName);

// The user this process runs as (for a runnerd started as an unprivileged service user).
executors::Credentials currentUser();

}  // namespace runner

#pragma once
// The private world-writable directories of a job.
//
// Every job of a root runnerd gets a mount namespace of its own whose world-writable
// directories (/tmp, /var/tmp, /dev/shm, /run/lock) are fresh tmpfs mounts (slave propagation
// from the host, so host mounts still reach it), and an IPC namespace of its own (SysV IPC and
// POSIX message queues that nobody else sees and that go with the job). The job's process makes
// them between clone and exec (see spawn-child.h); runnerd holds nothing of them, so they go,
// with the memory of whatever the job left in them, when the job's last process exits.

#include <kj/common.h>
#include <kj/string.h>

namespace runner::executors {

// The directories every user may write on a usual host, which a job gets as fresh tmpfs mounts
// of its own (sticky, world-writable) so that no job sees, plants or leaves anything there for
// another. Those that do not exist on the host are left out. What the host has below them is out
// of a job's sight.
constexpr const char* PRIVATE_TMPFS_MOUNTS[] = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock"};

// The one of PRIVATE_TMPFS_MOUNTS that `path` (absolute, without symlinks) is in or below.
kj::Maybe<kj::StringPtr> underPrivateTmpfs(kj::StringPtr path);

}  // namespace runner::executors

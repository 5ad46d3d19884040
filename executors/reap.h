#pragma once
// reapExited(): how both executors collect a job's main process once its pidfd says it has
// exited, and turn the kernel's answer into an ExitStatus.

#include <sys/types.h>

#include "executors/executor.h"

namespace runner::executors {

// Reaps the process behind `pidfd` (waitid(P_PIDFD, WEXITED); blocks until it has exited) and
// reports how it ended: its exit code or the signal that killed it, and the rusage the kernel
// keeps for it and the children it reaped. `pid` only names the process in errors. Throws when
// the process cannot be reaped (it was reaped already, or is not a child of this process).
ExitStatus reapExited(int pidfd, pid_t pid);

}  // namespace runner::executors

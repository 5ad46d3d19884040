#include "executors/reap.h"

#include <kj/debug.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace runner::executors {
namespace {

uint64_t micros(const struct timeval& time) {
  return uint64_t(time.tv_sec) * 1000000 + uint64_t(time.tv_usec);
}

}  // namespace

ExitStatus reapExited(int pidfd, pid_t pid) {
  // The kernel's waitid() also returns the rusage of the process and its reaped children,
  // which glibc's wrapper does not expose.
  siginfo_t info = {};
  struct rusage usage = {};
  KJ_SYSCALL(syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, &usage), pid);

  ExitStatus status;
  switch (info.si_code) {
    case CLD_EXITED:
      status.exitCode = info.si_status;
      break;
    case CLD_KILLED:
    case CLD_DUMPED:
      status.signaled = true;
      status.termSignal = info.si_status;
      break;
    default:
      KJ_FAIL_ASSERT("unexpected waitid() code", info.si_code, pid);
  }
  status.usage.cpuUserMicros = micros(usage.ru_utime);
  status.usage.cpuSystemMicros = micros(usage.ru_stime);
  // A child made with CLONE_VM (spawn(), posix_spawn) shared runnerd's memory until exec, and the
  // kernel carries that memory's peak into the child's at exec: a peak no larger than runnerd's
  // own may be runnerd's, and is reported as unknown (0).
  struct rusage own;
  KJ_SYSCALL(getrusage(RUSAGE_SELF, &own));
  status.usage.peakMemoryBytes =
      usage.ru_maxrss > own.ru_maxrss ? uint64_t(usage.ru_maxrss) * 1024 : 0;
  return status;
}

}  // namespace runner::executors

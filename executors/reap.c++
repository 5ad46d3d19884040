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
  status.usage.peakMemoryBytes = uint64_t(usage.ru_maxrss) * 1024;
  return status;
}

}  // namespace runner::executors

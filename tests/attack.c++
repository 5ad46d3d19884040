// attack: what a job could try against another owner's job through the kernel, for
// owner-isolation-test. Each verb makes one attempt on process PID and reports it:
//
//   attack ptrace PID        PTRACE_ATTACH, the door to its registers and memory
//   attack mem PID           open /proc/PID/mem for reading
//   attack getfd PID FD      take descriptor FD of PID with pidfd_getfd (its stdout, say)
//
// Prints "succeeded" and exits 0 when the attempt worked, "denied: REASON" and exits 1 when the
// kernel refused it, and exits 2 for a usage error.

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

int denied(const char* what) {
  printf("denied: %s: %s\n", what, strerror(errno));
  return 1;
}

int succeeded() {
  printf("succeeded\n");
  return 0;
}

int attachTo(pid_t pid) {
  if (ptrace(PTRACE_ATTACH, pid, nullptr, nullptr) < 0) return denied("ptrace");
  waitpid(pid, nullptr, __WALL);
  ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  return succeeded();
}

int openMemory(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/mem", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return denied("open mem");
  close(fd);
  return succeeded();
}

int takeDescriptor(pid_t pid, int target) {
  int pidfd = syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return denied("pidfd_open");
  int fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);
  if (fd < 0) return denied("pidfd_getfd");
  // Proof of possession: the descriptor can be written, which would forge the victim's output.
  if (write(fd, "forged\n", 7) != 7) return denied("write");
  return succeeded();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: attack ptrace|mem|getfd PID [FD]\n");
    return 2;
  }
  pid_t pid = atoi(argv[2]);
  if (strcmp(argv[1], "ptrace") == 0) return attachTo(pid);
  if (strcmp(argv[1], "mem") == 0) return openMemory(pid);
  if (strcmp(argv[1], "getfd") == 0 && argc == 4) return takeDescriptor(pid, atoi(argv[3]));
  fprintf(stderr, "usage: attack ptrace|mem|getfd PID [FD]\n");
  return 2;
}

// attack: what a job could try against another owner's job through the kernel, for
// owner-isolation-test. Each verb makes one attempt (on process PID, a SysV key or a key name)
// and reports it:
//
//   attack ptrace PID        PTRACE_ATTACH, the door to its registers and memory
//   attack mem PID           open /proc/PID/mem for reading
//   attack getfd PID FD      take descriptor FD of PID with pidfd_getfd (its stdout, say)
//   attack shm-put KEY TEXT  leave TEXT in a SysV shared memory segment with KEY, mode 0666
//   attack shm-get KEY       read the segment with KEY
//   attack key-put NAME TEXT add a key NAME holding TEXT to the session keyring
//   attack key-get NAME      read key NAME from the session keyring
//
// Prints "succeeded" and exits 0 when the attempt worked, "denied: REASON" and exits 1 when the
// kernel refused it, and exits 2 for a usage error.

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/keyctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
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

int putSegment(key_t key, const char* text) {
  int id = shmget(key, 4096, IPC_CREAT | 0666);
  if (id < 0) return denied("shmget");
  void* at = shmat(id, nullptr, 0);
  if (at == reinterpret_cast<void*>(-1)) return denied("shmat");
  strncpy(static_cast<char*>(at), text, 4095);
  return succeeded();
}

int getSegment(key_t key) {
  int id = shmget(key, 0, 0);
  if (id < 0) return denied("shmget");
  void* at = shmat(id, nullptr, SHM_RDONLY);
  if (at == reinterpret_cast<void*>(-1)) return denied("shmat");
  printf("%s\n", static_cast<const char*>(at));
  return succeeded();
}

int putKey(const char* name, const char* text) {
  if (syscall(SYS_add_key, "user", name, text, strlen(text), KEY_SPEC_SESSION_KEYRING) < 0) {
    return denied("add_key");
  }
  return succeeded();
}

int getKey(const char* name) {
  long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", name, 0);
  if (id < 0) return denied("keyctl search");
  char text[256] = {};
  if (syscall(SYS_keyctl, KEYCTL_READ, id, text, sizeof(text) - 1) < 0) return denied("read");
  printf("%s\n", text);
  return succeeded();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: attack VERB ARG [ARG]\n");
    return 2;
  }
  pid_t pid = atoi(argv[2]);
  if (strcmp(argv[1], "ptrace") == 0) return attachTo(pid);
  if (strcmp(argv[1], "mem") == 0) return openMemory(pid);
  if (strcmp(argv[1], "getfd") == 0 && argc == 4) return takeDescriptor(pid, atoi(argv[3]));
  key_t key = strtol(argv[2], nullptr, 0);
  if (strcmp(argv[1], "shm-put") == 0 && argc == 4) return putSegment(key, argv[3]);
  if (strcmp(argv[1], "shm-get") == 0) return getSegment(key);
  if (strcmp(argv[1], "key-put") == 0 && argc == 4) return putKey(argv[2], argv[3]);
  if (strcmp(argv[1], "key-get") == 0) return getKey(argv[2]);
  fprintf(stderr, "usage: attack VERB ARG [ARG]\n");
  return 2;
}

// The process references: what the kernel needs to start a process, and the wall time of a
// whole command (runctl, ssh) run as a new process each time.

#include <fcntl.h>
#include <kj/debug.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/benchmarks.h"

extern char** environ;

namespace runner {
namespace bench {

namespace {

// Spawns argv with stdout (and, with `quiet`, stderr) on /dev/null; returns its wait status.
int spawnAndWait(kj::ArrayPtr<char* const> argv, bool quiet) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  if (quiet) posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int error = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.begin(), environ);
  posix_spawn_file_actions_destroy(&actions);
  KJ_REQUIRE(error == 0, "cannot start", argv[0], strerror(error));
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  return status;
}

// Half the round trip of one byte between this process and a child over two pipes, p50 of
// `runs`: what handing work to another process (waking it) costs on this host. runnerd's start
// and a live line each pass through a few such hand-offs.
double handoffMicros(uint64_t runs) {
  int there[2], back[2];
  KJ_SYSCALL(pipe2(there, O_CLOEXEC));
  KJ_SYSCALL(pipe2(back, O_CLOEXEC));
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    close(there[1]);
    close(back[0]);
    char byte;
    while (read(there[0], &byte, 1) == 1) {
      if (write(back[1], &byte, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  close(there[0]);
  close(back[1]);
  Samples samples;
  char byte = 'x';
  for (uint64_t i = 0; i < runs + 100; i++) {
    double begin = now();
    KJ_SYSCALL(write(there[1], &byte, 1));
    ssize_t n;
    KJ_SYSCALL(n = read(back[0], &byte, 1));
    KJ_REQUIRE(n == 1, "the echoing child ended");
    // The first ones warm up.
    if (i >= 100) samples.add((now() - begin) / 2);
  }
  close(there[1]);
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  close(back[0]);
  return samples.percentile(50) * 1e6;
}

}  // namespace

int spawnReference(const Options& options) {
  auto runs = options.getNumber("runs", 2000);
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  for (int i = 0; i < 50; i++) spawnAndWait(argv, false);
  Samples samples;
  for (uint64_t i = 0; i < runs; i++) {
    double begin = now();
    int status = spawnAndWait(argv, false);
    samples.add(now() - begin);
    KJ_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "/bin/true failed", status);
  }
  JsonObject out;
  out.add("runs", runs);
  out.add("p50_us", samples.percentile(50) * 1e6);
  out.add("p99_us", samples.percentile(99) * 1e6);
  out.add("handoff_p50_us", handoffMicros(runs));
  printf("%s\n", out.toString().cStr());
  return 0;
}

int execTimes(const Options& options) {
  auto runs = options.getNumber("runs", 50);
  auto warmup = options.getNumber("warmup", 2);
  auto bytes = options.getNumber("bytes", 0);
  KJ_REQUIRE(options.command().size() > 0, "exec-times needs a command after --");
  kj::Vector<kj::String> words;
  for (auto word : options.command()) words.add(kj::str(word));
  kj::Vector<char*> argv;
  for (auto& word : words) argv.add(word.begin());
  argv.add(nullptr);

  for (uint64_t i = 0; i < warmup; i++) spawnAndWait(argv, false);
  Samples samples;
  for (uint64_t i = 0; i < runs; i++) {
    double begin = now();
    int status = spawnAndWait(argv, false);
    samples.add(now() - begin);
    KJ_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the command failed", words[0],
               status);
  }
  JsonObject out;
  out.add("runs", runs);
  out.add("p50_ms", samples.percentile(50) * 1e3);
  out.add("mean_ms", samples.mean() * 1e3);
  out.add("min_ms", samples.min() * 1e3);
  if (bytes > 0) out.add("mb_per_s", bytes / samples.percentile(50) / 1e6);
  printf("%s\n", out.toString().cStr());
  return 0;
}

}  // namespace bench
}  // namespace runner

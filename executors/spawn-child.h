#pragma once
// The child side of spawn(): what runs between clone3() and exec. A small plain-C world of
// async-signal-safe calls, kept apart from the parent side so that nothing of KJ's async
// machinery or allocation can creep into it. Internal to //executors:spawn.

#include <kj/common.h>
#include <sys/resource.h>
#include <sys/types.h>

namespace runner::executors {

// The child's steps, in the order it takes them. A failed step travels back through the
// error pipe as its number, and the parent turns it into a message.
enum class Step : int {
  SIGNALS,
  CGROUP,
  SESSION,
  STDIO,
  CLOSE_FDS,
  LIMITS,
  MOUNT_PRIVATE,
  MOUNT_PROC,
  LOOPBACK,
  SETGROUPS,
  SETGID,
  SETUID,
  CHDIR,
  NO_NEW_PRIVS,
  EXEC,
};

// The soft limit on open descriptors a job starts with (the usual default); it may raise it up
// to the hard limit itself.
constexpr rlim_t JOB_NOFILE_SOFT_LIMIT = 1024;

// What the child writes to the error pipe when a step fails.
struct ChildError {
  int errorNumber;
  Step step;
};

// Everything the child needs, prepared by the parent before clone3() so that the child never
// allocates. Pointers refer to storage owned by spawn()'s frame: the child has its own copy of
// that memory, so the parent frees it as soon as clone3() has returned.
struct ChildPlan {
  const char* const* argv;
  const char* const* envp;
  // Paths to try with execve(), in order: argv[0] itself when it contains a slash, otherwise
  // argv[0] appended to each directory of the job's PATH.
  kj::ArrayPtr<const char* const> execCandidates;
  const char* workingDir;

  int devNullFd;  // >= 3
  int outputFd;
  int errorFd;  // >= 3, close-on-exec
  kj::ArrayPtr<const int> cgroupProcsFds;

  bool makeMountsPrivate;
  bool mountProc;
  bool bringUpLoopback;

  // False when runnerd is not root: the job then runs as runnerd's own user.
  bool switchUser;
  uid_t uid;
  gid_t gid;
  kj::ArrayPtr<const gid_t> supplementaryGroups;
};

// Runs the child's steps and execs. Returns only after reporting a failure through
// `plan.errorFd`; the caller then exits.
void runChild(const ChildPlan& plan);

}  // namespace runner::executors

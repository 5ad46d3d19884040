#pragma once
// The child side of spawn(): what runs between clone() and exec. A small plain-C world of
// async-signal-safe calls, kept apart from the parent side so that nothing of KJ's async
// machinery or allocation can creep into it. Internal to //executors:spawn.

#include <kj/common.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "executors/mount-namespaces.h"

namespace runner::executors {

// The child's steps, in the order it takes them. A failed step travels back to the parent as
// its number, and the parent turns it into a message.
enum class Step : int {
  SIGNALS,
  CGROUP,
  SESSION,
  STDIO,
  CLOSE_FDS,
  LIMITS,
  MOUNT_PRIVATE,
  MOUNT_TMPFS,
  MOUNT_PROC,
  LOOPBACK,
  KEYRING,
  SETGROUPS,
  SETGID,
  SETUID,
  CANCELLED,
  CHDIR,
  NO_NEW_PRIVS,
  EXEC,
};

// The soft limit on open descriptors a job starts with (the usual default); it may raise it up
// to the hard limit itself.
constexpr rlim_t JOB_NOFILE_SOFT_LIMIT = 1024;

// What the child writes into the parent's memory when a step fails (errorNumber 0: none did).
struct ChildError {
  int errorNumber;
  Step step;
};

// Everything the child needs, prepared by the parent before clone() so that the child never
// allocates. The child shares the parent's memory: everything pointed to stays alive, and
// unchanged, until the child has exec'd or exited.
struct ChildPlan {
  const char* const* argv;
  const char* const* envp;
  // Paths to try with execve(), in order: argv[0] itself when it contains a slash, otherwise
  // argv[0] appended to each directory of the job's PATH.
  kj::ArrayPtr<const char* const> execCandidates;
  const char* workingDir;

  int devNullFd;  // >= 3
  int outputFd;
  kj::ArrayPtr<const int> cgroupProcsFds;

  // Where a failed step is reported.
  ChildError* report;
  // Set by the parent's event loop when it gives up on the launch. Read once the child can be
  // signalled by other processes of the run-as user (after the switch to it), so that a child
  // the parent could not yet kill does not go on to exec.
  const bool* cancelled;

  // In a mount namespace of the child's own: with makeMountsPrivate, no mount event crosses
  // between it and the host's; otherwise the host's reach it (slave propagation), and with
  // privateTmp, the host's world-writable directories (PRIVATE_TMPFS_MOUNTS) are fresh tmpfs
  // mounts, gone with the job's last process.
  bool makeMountsPrivate;
  bool privateTmp;
  // A session keyring of the job's own, rather than the one runnerd was started in.
  bool ownKeyring;
  bool mountProc;
  bool bringUpLoopback;

  // False when runnerd is not root: the job then runs as runnerd's own user.
  bool switchUser;
  uid_t uid;
  gid_t gid;
  kj::ArrayPtr<const gid_t> supplementaryGroups;
};

// Mounts a fresh tmpfs on each of PRIVATE_TMPFS_MOUNTS that exists, in the calling process's
// mount namespace (see mount-namespaces.h). Async-signal-safe. Returns false with errno set when one fails.
bool mountPrivateTmpfs();

// Runs the child's steps and execs. Returns only after reporting a failure in `plan.report`;
// the caller then exits.
void runChild(const ChildPlan& plan);

}  // namespace runner::executors

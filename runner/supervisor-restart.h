#pragma once
// How runner-supervisor replaces itself with a new image of its binary (SIGHUP: an upgrade)
// without letting go of anything: its jobs are its children and stay so across execve(); the
// listening socket and the locked pid file are handed over as descriptors, so that no client is
// refused meanwhile and no second supervisor can start.

#include <kj/async-unix.h>
#include <kj/io.h>
#include <kj/string.h>
#include <kj/timer.h>

namespace runner {

// The environment variable that carries the handed-over descriptors: "LISTEN_FD,PID_FILE_FD".
constexpr kj::StringPtr INHERITED_ENV = "RUNNER_SUPERVISOR_INHERITED"_kj;

// What the image a re-exec started takes over from the one before.
struct InheritedFds {
  kj::AutoCloseFd listenFd;
  kj::AutoCloseFd pidFile;
};

// In the image a re-exec started: the descriptors handed over, close-on-exec again, and
// INHERITED_ENV gone from the environment (nothing started from here on sees it). nullptr for a
// supervisor started afresh. Throws when what is handed over is not a listening socket.
kj::Maybe<InheritedFds> takeInheritedFds();

// The binary this process runs, by the path it was started from: a re-exec starts what is
// installed there now (an upgrade), not the file this process was loaded from.
kj::String ownBinaryPath();

// Starts `exe --version` and resolves once it has exited 0; rejects with one line otherwise, or
// after `deadline`. A binary that cannot even start (missing, not executable, a broken install)
// is not exec'd over a supervisor that holds jobs. Waits on the event loop, not on the child.
kj::Promise<void> checkBinaryStarts(kj::UnixEventPort& eventPort, kj::Timer& timer,
                                    kj::StringPtr exe, kj::Duration deadline);

// Replaces this process with `exe` started with `argv` (its own, unchanged), handing over
// `listenFd` and `pidFd`. Returns only when execve() failed, with its errno, everything as it was.
int execSelf(kj::StringPtr exe, kj::ArrayPtr<char* const> argv, int listenFd, int pidFd);

}  // namespace runner

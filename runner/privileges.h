#pragma once
// What a root runnerd does before it serves: start (or find) the supervisor that runs its jobs,
// then become an unprivileged user for good. Everything that needs root after start-up is the
// supervisor's (schema/executor.capnp); runnerd keeps only what it opened as root (its TLS key,
// its listening socket, its claim on a uid range).

#include <kj/string.h>
#include <kj/vector.h>
#include <sys/types.h>

namespace runner {

// The system user a root runnerd becomes (scripts/install-deps creates it).
constexpr kj::StringPtr DAEMON_USER = "runner"_kj;

struct DaemonUser {
  uid_t uid;
  gid_t gid;
  kj::String name;
};

// DAEMON_USER's uid and gid; throws one line naming scripts/install-deps when it is missing, or
// when it is root.
DaemonUser daemonUser();

// Gives `path` (a file or directory runnerd alone writes) to `user`, unless it already is; a
// symlink is refused, not followed.
void giveTo(kj::StringPtr path, const DaemonUser& user);

// The directory of runnerd's job database below the state directory, and the files of that
// database.
constexpr kj::StringPtr DATABASE_DIR = "runnerd"_kj;
constexpr kj::StringPtr DATABASE_FILES[] = {"runner.db"_kj, "runner.db-wal"_kj, "runner.db-shm"_kj,
                                            "runner.db-journal"_kj};

// Makes `stateDir` root's (owner and group root, mode 0711) and its DATABASE_DIR the daemon
// user's (mode 0700), moving a database an older runnerd kept in the state directory itself into
// it. The supervisor keeps its pid file, socket and records in the state directory and the homes
// are there: a user who could write it could rename any of them and put something else in its
// place for root to signal, chmod or chown. Works through descriptors opened with O_NOFOLLOW: a
// state directory the daemon user owned until now may hold anything it put there.
void secureStateDirectory(kj::StringPtr stateDir, const DaemonUser& user);

// Becomes `user` for good: no supplementary groups, real, effective and saved uid and gid
// `user`'s, every capability gone (the bounding set too, so nothing can be regained by exec),
// and no new privileges. Throws if any of it did not hold.
void dropPrivileges(const DaemonUser& user);

// The supervisor's socket below `stateDir`.
kj::String supervisorSocketPath(kj::StringPtr stateDir);

// Makes sure a supervisor runs on `stateDir` (one holds the lock on <stateDir>/supervisor.pid):
// if none does, starts `binary` with `args`, in a session of its own and detached from runnerd
// (it is init's child, not runnerd's), so that it outlives runnerd; its stderr is runnerd's.
// Returns the pid of the supervisor it started, or 0 when one was running. Throws one line when
// the binary is missing or cannot be started. The caller waits for its socket to answer.
pid_t ensureSupervisor(kj::StringPtr stateDir, kj::StringPtr binary,
                       kj::ArrayPtr<const kj::String> args);

// runner-supervisor beside this process's executable.
kj::String supervisorBinaryBesideSelf();

}  // namespace runner

#pragma once
// CgroupDir: one cgroup directory held open as a descriptor, and the small text protocol of its
// interface files (one value per write, "key value" lines, pid lists). Both drivers build on it;
// sysfs and procfs directories, whose files read the same way, are read through it too.

#include <kj/array.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <stdint.h>
#include <sys/types.h>

namespace runner::executors::cgroup {

// Throws an exception whose whole description is "LIMIT: DETAIL", for a limit (or a piece of
// job accounting, e.g. "memory accounting") the host cannot provide; `limit` names it, e.g.
// "io-write limit". UNIMPLEMENTED by default: the executor cannot do it on this host.
[[noreturn]] void failLimit(kj::StringPtr limit, kj::StringPtr detail,
                            kj::Exception::Type type = kj::Exception::Type::UNIMPLEMENTED);

class CgroupDir {
 public:
  // Opens the existing directory `path` (O_RDONLY | O_DIRECTORY).
  explicit CgroupDir(kj::String path);
  KJ_DISALLOW_COPY(CgroupDir);
  CgroupDir(CgroupDir&&) = default;

  kj::StringPtr path() const { return dirPath; }
  int fd() const { return dirFd; }

  // The whole content of interface file `name`, or nullptr when the file does not exist.
  kj::Maybe<kj::String> tryRead(kj::StringPtr name) const;
  kj::String read(kj::StringPtr name) const;

  // Writes `value` to interface file `name` with a single write(2), as cgroupfs wants.
  // Returns 0 or the errno. The open uses O_CREAT: cgroupfs never creates files (a missing
  // interface file still fails), while a plain directory standing in for cgroupfs in tests
  // gets the file the kernel would have provided.
  int tryWrite(kj::StringPtr name, kj::StringPtr value) const;

  // tryWrite(), throwing on failure with a description naming `limit` (e.g. "memory limit").
  void writeLimit(kj::StringPtr limit, kj::StringPtr name, kj::StringPtr value) const;

  // The value of `key` in a file of "key value" lines (cpu.stat, memory.events, ...).
  kj::Maybe<uint64_t> readKeyed(kj::StringPtr name, kj::StringPtr key) const;

  // A file holding one number (memory.peak, cpuacct.usage_user, ...); nullptr when absent.
  kj::Maybe<uint64_t> readNumber(kj::StringPtr name) const;

  // The pids listed in cgroup.procs.
  kj::Array<pid_t> processes() const;

  bool exists(kj::StringPtr name) const;

  // Renames the directory to `name` under the same parent (rename(2); cgroupfs v1 allows it within
  // one parent, v2 refuses with EPERM), keeping its descriptor. Throws on failure, naming both.
  void rename(kj::StringPtr name);

 private:
  kj::String dirPath;
  kj::AutoCloseFd dirFd;
};

// Creates `relative` (and its missing ancestors) under the directory `root`; existing
// directories are fine.
void makeDirs(kj::StringPtr root, kj::StringPtr relative);

// Joins path pieces with exactly one '/' between them; empty pieces are skipped.
kj::String joinPath(kj::ArrayPtr<const kj::StringPtr> pieces);

// `path` is a directory strictly below `dir` and has no "." or ".." component.
bool isBelow(kj::StringPtr path, kj::StringPtr dir);

// rmdir() of a cgroup directory that should be empty. Returns false while the kernel still
// says EBUSY (the last process has died but is not yet released); true once the directory is
// gone (or was already). Throws for any other error.
bool tryRemoveDir(kj::StringPtr path);

// How long removeDirBlocking() keeps trying by default: a process waiting in the kernel (for a
// throttled write, say) dies only once that wait is over.
constexpr uint32_t REMOVE_TIMEOUT_MILLIS = 60000;

// tryRemoveDir() of `dir`, retried while the kernel says EBUSY for up to `maxMillis` milliseconds;
// before each retry whatever processes are still in the cgroup are SIGKILLed (a job's leftovers
// that a fork let slip past its kill, or that a previous server left). Throws if the directory is
// still there then. Blocking: for a Disposer's thread, or for a cgroup just made (which is empty
// and goes at once).
void removeDirBlocking(const CgroupDir& dir, uint32_t maxMillis = REMOVE_TIMEOUT_MILLIS);

// The names of the directories in `path` (none when it does not exist).
kj::Array<kj::String> listSubdirectories(kj::StringPtr path);

}  // namespace runner::executors::cgroup

#pragma once
// The cgroup driver interface: one per cgroup version (v1 per-controller hierarchies, v2 the
// unified hierarchy), each creating and owning the cgroup(s) of one job. The executor only
// speaks this interface, so v1 and v2 hosts behave the same from above.

#include <kj/async.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/timer.h>
#include <stdint.h>
#include <sys/types.h>

#include "executors/cgroup/io-device.h"
#include "executors/executor.h"

namespace runner::executors::cgroup {

// The cgroup (v2) or set of cgroups, one per hierarchy (v1), of one job. Destroying it removes
// the cgroup(s), SIGKILLing what is still in them and retrying while the kernel says they are
// busy, for up to REMOVE_TIMEOUT_MILLIS: that blocks, so an ended job's cgroup is destroyed on a
// Disposer's thread (kill it and wait for isEmpty() first).
class JobCgroup {
 public:
  virtual ~JobCgroup() noexcept(false) = default;

  // 1 or 2.
  virtual uint8_t version() const = 0;

  // v2: the job's cgroup directory. v1: the job's directory in the memory hierarchy (the one
  // whose counters decide OOM kills); allPaths() lists every hierarchy.
  virtual kj::StringPtr path() const = 0;
  virtual kj::Array<kj::StringPtr> allPaths() const = 0;

  // What spawn() needs to start the main process inside the cgroup: the open cgroup.procs of
  // every hierarchy (v1) or of the one cgroup (v2), which the child writes itself into before
  // it does anything else.
  virtual kj::ArrayPtr<const int> spawnProcsFds() const = 0;

  // Kills every process in the cgroup (SIGKILL), including ones forked while killing: v2 writes
  // 1 to cgroup.kill and resolves at once; v1 freezes the cgroup, waits until it reports FROZEN
  // (checking on `timer`, never blocking; at most CgroupV1Driver::FREEZE_TIMEOUT_MILLIS, since a
  // process waiting in the kernel cannot be frozen), kills every pid, thaws. Resolves once the
  // signals are sent; the processes are gone shortly after (see isEmpty()). The promise must not
  // outlive this object, and one kill at a time is enough (callers share it).
  virtual kj::Promise<void> killAll(kj::Timer& timer) = 0;

  // Sends `signal` to every process currently in the cgroup.
  virtual void signalAll(int signal) = 0;

  // No process is left in the cgroup.
  virtual bool isEmpty() const = 0;

  // The processes in the cgroup now.
  virtual kj::Array<pid_t> processes() const = 0;

  // Processes of the job the kernel's OOM killer has killed (memory.events oom_kill on v2,
  // memory.oom_control oom_kill on v1). The cgroup is new, so this starts at 0.
  virtual uint64_t oomKillCount() const = 0;

  // CPU time and peak memory from the cgroup's counters, for all its processes, dead or alive,
  // and the memory it is charged now.
  virtual Usage usage() const = 0;

  // Gives the cgroup(s) the name `jobId` under the same parent: a spare tracking cgroup taken by a
  // new job is found by that job's id (CgroupDriver::open()) if a crash leaves it. Only where the
  // driver says renamesCgroups(); throws on failure.
  virtual void rename(kj::StringPtr jobId) = 0;

  // Removes the cgroup directories. Returns false while the kernel still reports EBUSY (the
  // last process died but is not yet released): call again shortly. True once all are gone.
  virtual bool tryRemove() = 0;
};

class CgroupDriver {
 public:
  virtual ~CgroupDriver() noexcept(false) = default;

  // 1 or 2.
  virtual uint8_t version() const = 0;

  // Whether JobCgroup::rename() works: v1 renames within a parent; v2 has no rename of cgroups.
  virtual bool renamesCgroups() const = 0;

  // Creates the cgroup of job `jobId` (a child of the driver's parent cgroup named after the
  // job) and applies `limits`; IO limits apply to `ioDevice`, which they require. A limit that
  // cannot be applied (controller missing, invalid value, no device) throws, naming the limit,
  // and leaves nothing behind.
  virtual kj::Own<JobCgroup> create(kj::StringPtr jobId, const Limits& limits,
                                    kj::Maybe<const IoDevice&> ioDevice) = 0;

  // A cgroup that only holds the processes of job `jobId`, so that all of them can be signalled
  // and killed, whatever session or process group they moved to (the local executor's): v2, a
  // cgroup with no controller enabled; v1, the job's cgroup in the freezer hierarchy alone.
  // Its oomKillCount() and usage() are not available (they need controllers).
  virtual kj::Own<JobCgroup> createTracking(kj::StringPtr jobId) = 0;

  // The names of the cgroups below the parent, in any hierarchy: at start-up, what a previous
  // server left (it crashed with jobs running, or while starting one).
  virtual kj::Array<kj::String> listJobCgroups() = 0;

  // The existing cgroup `name` below the parent, in whichever hierarchies hold it, to kill what is
  // in it and remove it; nullptr when there is none. Only signalAll(), isEmpty() and removal are
  // meant for it.
  virtual kj::Maybe<kj::Own<JobCgroup>> open(kj::StringPtr name) = 0;

  // The existing cgroup whose directories are `paths` (JobCgroup::allPaths() of one this driver
  // made, or made in an earlier run of this process), without its cgroup.procs descriptors: for a
  // job watched again (everything but spawnProcsFds() works), or to kill what is left in it.
  // Directories that no longer exist are left out; nullptr when none does. Throws for a path
  // outside this driver's hierarchies.
  virtual kj::Maybe<kj::Own<JobCgroup>> reopen(kj::ArrayPtr<const kj::String> paths) = 0;
};

// The cgroup of the calling process as listed in `procSelfCgroup` (the text of
// /proc/self/cgroup): the line of v1 controller `controller`, or the "0::" line of the unified
// hierarchy when `controller` is nullptr. nullptr when there is no such line.
kj::Maybe<kj::String> ownCgroup(kj::StringPtr procSelfCgroup, kj::Maybe<kj::StringPtr> controller);

// The parent of job cgroups, as runnerd --cgroup-parent takes it: a path starting with '/' is
// relative to the hierarchy's root; any other path is below runnerd's own cgroup.
constexpr kj::StringPtr DEFAULT_CGROUP_PARENT = "runner"_kj;

// The parent cgroup `parent` designates (see DEFAULT_CGROUP_PARENT) for a process whose own
// cgroup is `ownCgroupPath`, as a path from the hierarchy's root ("/a/b/runner").
kj::String resolveCgroupParent(kj::StringPtr ownCgroupPath, kj::StringPtr parent);

// The default parent of job cgroups: a child named "runner" of `ownCgroupPath`.
kj::String defaultCgroupParent(kj::StringPtr ownCgroupPath);

// Where the cgroup hierarchies of this host are mounted, read from /proc/self/mountinfo.
struct CgroupMounts {
  struct V1 {
    // The controllers bound to this hierarchy, e.g. {"cpu", "cpuacct"} when co-mounted.
    kj::Array<kj::String> controllers;
    kj::String mountPoint;
    // The cgroup at the mount point ("/" unless a container mounted a sub-tree).
    kj::String mountRoot;
  };
  kj::Vector<V1> v1;

  struct V2 {
    kj::String mountPoint;
    kj::String mountRoot;
  };
  kj::Maybe<V2> v2;
};

// Parses the text of /proc/self/mountinfo.
CgroupMounts parseCgroupMounts(kj::StringPtr mountinfo);

// The driver for this host: v2 when the unified hierarchy's root offers cpu, memory, pids and
// io in cgroup.controllers; otherwise v1 when a v1 memory hierarchy is mounted; otherwise v2 if
// mounted at all (limits needing a missing controller then fail when applied). `parent` is
// resolved per hierarchy with resolveCgroupParent() against this process's own cgroup there.
// Throws when the host has no usable cgroup hierarchy.
kj::Own<CgroupDriver> newHostCgroupDriver(kj::StringPtr parent = DEFAULT_CGROUP_PARENT);

}  // namespace runner::executors::cgroup

#pragma once
// The cgroup v1 driver: one cgroup per job in each per-controller hierarchy it needs.
//
// Every job gets memory, cpuacct, pids and freezer cgroups (OOM kills, usage, the pid count and
// killing the whole job need them even without limits); cpu and blkio cgroups only when those
// limits are set. Limits: cpu.cfs_quota_us over cpu.cfs_period_us, memory.limit_in_bytes with
// memory.memsw.limit_in_bytes equal to it (no swap), pids.max,
// blkio.throttle.{read,write}_bps_device. Killing freezes, SIGKILLs every pid, then thaws; the
// wait for the freeze is paced by a timer, so the event loop never sleeps on it.

#include <kj/array.h>
#include <kj/string.h>

#include "executors/cgroup/cgroup-driver.h"

namespace runner::executors::cgroup {

struct CgroupV1Hierarchy {
  // The controllers bound to the hierarchy, e.g. {"cpu", "cpuacct"} when co-mounted.
  kj::Array<kj::String> controllers;
  // Where it is mounted, e.g. /sys/fs/cgroup/memory.
  kj::String mountPoint;
  // The parent of job cgroups, relative to the mount point; created when missing.
  kj::String parent;
};

class CgroupV1Driver final : public CgroupDriver {
 public:
  explicit CgroupV1Driver(kj::Array<CgroupV1Hierarchy> hierarchies);

  uint8_t version() const override { return 1; }
  bool renamesCgroups() const override { return true; }
  kj::Own<JobCgroup> create(kj::StringPtr jobId, const Limits& limits,
                            kj::Maybe<const IoDevice&> ioDevice) override;
  kj::Own<JobCgroup> createTracking(kj::StringPtr jobId) override;
  kj::Array<kj::String> listJobCgroups() override;
  kj::Maybe<kj::Own<JobCgroup>> open(kj::StringPtr name) override;
  kj::Maybe<kj::Own<JobCgroup>> reopen(kj::ArrayPtr<const kj::String> paths) override;

  // CPU bandwidth period written to cpu.cfs_period_us, in microseconds.
  static constexpr uint32_t CPU_PERIOD_MICROS = 100000;

  // How long killAll() waits (on its timer, not blocking) for the freezer to report FROZEN before
  // killing anyway.
  static constexpr uint32_t FREEZE_TIMEOUT_MILLIS = 1000;

  // The hierarchy `controller` is bound to, if mounted.
  kj::Maybe<const CgroupV1Hierarchy&> find(kj::StringPtr controller) const;

 private:
  kj::Array<CgroupV1Hierarchy> hierarchies;
};

}  // namespace runner::executors::cgroup

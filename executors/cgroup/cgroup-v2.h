#pragma once
// The cgroup v2 driver: one cgroup per job in the unified hierarchy.
//
// Limits: cpu.max, memory.max with memory.swap.max = 0, pids.max, io.max. The controllers a
// job needs are enabled in cgroup.subtree_control from the hierarchy's root down to the
// parent of job cgroups. Killing uses cgroup.kill (Linux 5.14). The main process writes itself
// into cgroup.procs before exec, as on v1: CLONE_INTO_CGROUP exists only for clone3(), which
// from C can only fork (copy runnerd's page tables), and spawn() shares memory instead.

#include <kj/string.h>

#include "executors/cgroup/cgroup-driver.h"

namespace runner::executors::cgroup {

class CgroupV2Driver final : public CgroupDriver {
 public:
  // `root`: where the unified hierarchy is mounted (/sys/fs/cgroup, /sys/fs/cgroup/unified, or
  // a directory tree standing in for it in tests). `parent`: the parent of job cgroups,
  // relative to `root`; created when missing.
  CgroupV2Driver(kj::String root, kj::String parent);

  uint8_t version() const override { return 2; }
  // The kernel refuses to rename a cgroup of the unified hierarchy (EPERM).
  bool renamesCgroups() const override { return false; }
  kj::Own<JobCgroup> create(kj::StringPtr jobId, const Limits& limits,
                            kj::Maybe<const IoDevice&> ioDevice) override;
  kj::Own<JobCgroup> createTracking(kj::StringPtr jobId) override;
  kj::Array<kj::String> listJobCgroups() override;
  kj::Maybe<kj::Own<JobCgroup>> open(kj::StringPtr name) override;
  kj::Maybe<kj::Own<JobCgroup>> reopen(kj::ArrayPtr<const kj::String> paths) override;

  // CPU bandwidth period written to cpu.max, in microseconds.
  static constexpr uint32_t CPU_PERIOD_MICROS = 100000;

 private:
  struct Need {
    kj::StringPtr controller;
    // What needs it, for errors: "cpu limit", "memory accounting"...
    kj::StringPtr limit;
  };

  kj::String root;
  kj::String parent;

  // Checks every cgroup from the root down to the parent offers the controllers, and enables
  // those not yet enabled in its cgroup.subtree_control.
  void enableControllers(kj::ArrayPtr<const Need> needs);
};

}  // namespace runner::executors::cgroup

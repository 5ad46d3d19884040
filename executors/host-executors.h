#pragma once
// The executors of this host, as runnerd and runner-supervisor both build them: `local` (its jobs
// tracked in cgroups when this process may make them) and `cgroup` (when a writable hierarchy is
// there).

#include <kj/async-unix.h>
#include <kj/function.h>
#include <kj/timer.h>

#include "executors/executor.h"

namespace runner::executors {

struct HostExecutorOptions {
  // Parent of the jobs' cgroups (see runnerd's --cgroup-parent).
  kj::StringPtr cgroupParent;
  // Which executors to build, by name; the others are left out.
  kj::Function<bool(kj::StringPtr name)> wanted = [](kj::StringPtr) { return true; };
  // The name each executor is served under, by its kind ("local", "cgroup"); its kind when
  // left alone.
  kj::Function<kj::StringPtr(kj::StringPtr kind)> nameOf = [](kj::StringPtr kind) {
    return kind;
  };
  // When the cgroup executor cannot be built, throw (saying why) rather than leave it out.
  bool requireCgroup = false;
  // Receives one line per decision (which cgroup version, why an executor is missing).
  kj::Function<void(kj::StringPtr line)> log;
};

// Adds the wanted executors to `set`. `eventPort` and `timer` must outlive them.
void addHostExecutors(ExecutorSet& set, kj::UnixEventPort& eventPort, kj::Timer& timer,
                      HostExecutorOptions options);

}  // namespace runner::executors

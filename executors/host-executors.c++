#include "executors/host-executors.h"

#include <kj/debug.h>
#include <unistd.h>

#include "executors/cgroup/cgroup-executor.h"
#include "executors/local/local-executor.h"

namespace runner::executors {
namespace {

// The cgroups that track the local executor's jobs (so that a stop reaches the processes that
// left the job's process group), when this host and this process allow it.
kj::Maybe<kj::Own<cgroup::CgroupDriver>> trackingDriver(HostExecutorOptions& options) {
  kj::Maybe<kj::Own<cgroup::CgroupDriver>> result;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 auto driver = cgroup::newHostCgroupDriver(options.cgroupParent);
                 // A first cgroup made and removed at once: the driver can do it here.
                 driver->createTracking(kj::str("probe-", getpid()));
                 options.log(kj::str("the local executor tracks each job in a cgroup (v",
                                     driver->version(), ") under ", options.cgroupParent));
                 result = kj::mv(driver);
               })) {
    options.log(
        kj::str("the local executor tracks jobs by process group only (a process that "
                "leaves it escapes a stop): ",
                e->getDescription()));
  }
  return result;
}

}  // namespace

void addHostExecutors(ExecutorSet& set, kj::UnixEventPort& eventPort, kj::Timer& timer,
                      HostExecutorOptions options) {
  if (options.wanted("local")) {
    set.add(renamed(kj::heap<LocalExecutor>(eventPort, timer, LAUNCH_TIMEOUT,
                                            trackingDriver(options)),
                    options.nameOf("local")));
  }
  if (!options.wanted("cgroup")) return;
  // The cgroup executor needs a cgroup hierarchy this process may write to.
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 auto driver = cgroup::newHostCgroupDriver(options.cgroupParent);
                 options.log(kj::str("the cgroup executor uses cgroup v", driver->version(),
                                     ", job cgroups under ", options.cgroupParent));
                 set.add(renamed(kj::heap<cgroup::CgroupExecutor>(eventPort, timer,
                                                                  kj::mv(driver)),
                                 options.nameOf("cgroup")));
               })) {
    if (options.requireCgroup) {
      KJ_FAIL_REQUIRE(kj::str("the cgroup executor is not available: ", e->getDescription()));
    }
    options.log(kj::str("the cgroup executor is not available: ", e->getDescription()));
  }
}

}  // namespace runner::executors

#include "executors/cgroup/cgroup-executor.h"

#include <errno.h>
#include <kj/debug.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "executors/job-process.h"
#include "executors/spawn.h"
#include "executors/threads.h"

namespace runner::executors::cgroup {
// What a launch makes for its job on the launcher thread (its cgroup), held until the job's process
// exists; handed to the remover if it never does, where the last reference goes (on the event
// loop): a cancelled child may take a moment to die, and rmdir answers EBUSY until then.
struct CgroupSlot : public kj::Refcounted {
  executors::Disposer& remover;
  // A spare tracking cgroup taken on the event loop, renamed after the job on the launcher thread.
  kj::Maybe<kj::Own<JobCgroup>> spare;
  kj::Own<JobCgroup> cgroup;
  // Where the job is, for status output: the cgroup executor's cgroup; nothing for a tracked job.
  Placement placement;

  explicit CgroupSlot(executors::Disposer& remover) : remover(remover) {}
  ~CgroupSlot() noexcept(false) {
    KJ_IF_MAYBE (s, spare) {
      remover.dispose(kj::mv(*s));
    }
    if (cgroup.get() != nullptr) remover.dispose(kj::mv(cgroup));
  }
  KJ_DISALLOW_COPY(CgroupSlot);
};

CgroupExecutor::CgroupExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer,
                               kj::Own<CgroupDriver> driver, kj::Duration launchTimeout)
    : eventPort(eventPort), timer(timer), driver(kj::mv(driver)), launchTimeout(launchTimeout) {}

kj::Array<kj::String> CgroupExecutor::sweepLeftovers(
    kj::FunctionParam<bool(kj::StringPtr name)> isOurs) {
  kj::Vector<kj::String> swept;
  for (auto& name : driver->listJobCgroups()) {
    if (!isOurs(name)) continue;
    KJ_IF_MAYBE (cgroup, driver->open(name)) {
      // Now, before anything is served; then removed on the remover's thread, which kills again
      // whatever a fork let slip and waits for what the kernel holds.
      (*cgroup)->signalAll(SIGKILL);
      disposer.dispose(kj::mv(*cgroup));
      swept.add(kj::mv(name));
    }
  }
  return swept.releaseAsArray();
}

kj::Own<Process> CgroupExecutor::reattach(const JobTrace& trace) {
  KJ_REQUIRE(trace.cgroupPaths.size() > 0, "the job has no cgroup to watch it by", trace.pid);
  auto cgroup = KJ_REQUIRE_NONNULL(driver->reopen(trace.cgroupPaths), "the job's cgroup is gone",
                                   trace.pid, trace.cgroupPaths);
  JobCgroupUse use{kj::mv(cgroup), timer, disposer, trace.accounting, nullptr,
                   trace.placement.clone()};
  if (!trace.accounting && driver->renamesCgroups()) use.spares = spareTracking;
  return kj::heap<JobProcess>(eventPort, trace.pid, openPidfd(trace.pid), trace.pidStartTime,
                              kj::mv(use));
}

kj::Promise<void> CgroupExecutor::killRemains(kj::StringPtr jobId, const JobTrace& trace) {
  if (trace.pid > 1) killSessionOf(trace.pid, trace.pidStartTime);
  kj::Maybe<kj::Own<JobCgroup>> found =
      trace.cgroupPaths.size() > 0 ? driver->reopen(trace.cgroupPaths) : driver->open(jobId);
  KJ_IF_MAYBE (cgroup, found) {
    auto& job = **cgroup;
    return kj::evalNow([this, &job]() { return job.killAll(timer); })
        .catch_([&job](kj::Exception&& e) {
          // A cgroup missing its freezer (v1) is killed without the freeze.
          KJ_LOG(WARNING, "killing what is left of a job without freezing it", job.path(), e);
          job.signalAll(SIGKILL);
        })
        .then([this, cgroup = kj::mv(*cgroup)]() mutable {
          // The remover kills again whatever a fork let slip, and waits for what the kernel holds.
          disposer.dispose(kj::mv(cgroup));
        });
  }
  return kj::READY_NOW;
}

kj::Promise<void> CgroupExecutor::drain() {
  for (auto& spare : spareTracking) disposer.dispose(kj::mv(spare));
  spareTracking.clear();
  return whenRemoverIdle();
}

kj::Promise<void> CgroupExecutor::whenRemoverIdle() {
  if (disposer.idle()) return kj::READY_NOW;
  return timer.afterDelay(5 * kj::MILLISECONDS).then([this]() { return whenRemoverIdle(); });
}

kj::StringPtr CgroupExecutor::name() const {
  return "cgroup";
}

kj::Promise<LaunchResult> CgroupExecutor::launch(LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");

  auto make = [this, jobId = kj::str(request.jobId), limits = request.limits,
               workingDir = kj::str(request.workingDir)](CgroupSlot& slot) {
    // After the caller's step, which may make the working directory (the job user's home).
    kj::Maybe<IoDevice> ioDevice;
    kj::String ioDescription;
    if (limits.ioReadBytesPerSec || limits.ioWriteBytesPerSec) {
      auto& device = ioDevice.emplace(ioDeviceOf(workingDir, ioLimitName(limits)));
      ioDescription = device.describe();
    }
    slot.cgroup = driver->create(jobId, limits, ioDevice);
    slot.placement.cgroup = Placement::Cgroup{slot.cgroup->version(),
                                              kj::heapString(slot.cgroup->path()),
                                              kj::mv(ioDescription)};
  };
  return launchIn(kj::mv(request), kj::refcounted<CgroupSlot>(disposer), kj::mv(make), true);
}

kj::Promise<LaunchResult> CgroupExecutor::launchTracked(LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
  KJ_REQUIRE(!request.limits.any(), "a tracked launch applies no limits");
  auto slot = kj::refcounted<CgroupSlot>(disposer);
  if (!spareTracking.empty()) {
    slot->spare = kj::mv(spareTracking.back());
    spareTracking.removeLast();
  }
  auto make = [this, jobId = kj::str(request.jobId)](CgroupSlot& slot) {
    KJ_IF_MAYBE (s, slot.spare) {
      auto spare = kj::mv(*s);
      slot.spare = nullptr;
      // Named after this job before it runs in it: a supervisor that crashes before recording
      // where the job is finds its cgroup by the job's id (killRemains()).
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { spare->rename(jobId); })) {
        KJ_LOG(WARNING, "a spare tracking cgroup could not be renamed; making a new one", *e);
        disposer.dispose(kj::mv(spare));
      } else {
        slot.cgroup = kj::mv(spare);
        return;
      }
    }
    slot.cgroup = driver->createTracking(jobId);
  };
  return launchIn(kj::mv(request), kj::mv(slot), kj::mv(make), false);
}

kj::Promise<LaunchResult> CgroupExecutor::launchIn(LaunchRequest&& request,
                                                   kj::Own<CgroupSlot> slot,
                                                   kj::Function<void(CgroupSlot&)> make,
                                                   bool accounting) {
  SpawnOptions options{request};
  options.launchTimeout = launchTimeout;
  // The cgroup is made on the launcher thread, after the caller's step (a record naming the job
  // comes before anything named after it), off the event loop.
  options.beforeStart = [first = kj::mv(request.beforeStart), make = kj::mv(make),
                         slot = kj::addRef(*slot)]() mutable -> kj::Array<int> {
    KJ_IF_MAYBE (f, first) {
      (*f)();
    }
    make(*slot);
    return kj::heapArray(slot->cgroup->spawnProcsFds());
  };
  return spawn(launcher, timer, kj::mv(options))
      .then([this, slot = kj::mv(slot), accounting](SpawnResult&& result) mutable -> LaunchResult {
        KJ_SWITCH_ONEOF(result) {
          KJ_CASE_ONEOF(spawned, Spawned) {
            auto startTime = processStartTime(spawned.pid).orDefault(0);
            JobCgroupUse use{kj::mv(slot->cgroup), timer, disposer, accounting, nullptr,
                             kj::mv(slot->placement)};
            if (!accounting && driver->renamesCgroups()) use.spares = spareTracking;
            kj::Own<Process> process = kj::heap<JobProcess>(
                eventPort, spawned.pid, kj::mv(spawned.pidfd), startTime, kj::mv(use));
            return kj::mv(process);
          }
          KJ_CASE_ONEOF(failure, LaunchFailure) {
            return kj::mv(failure);
          }
        }
        KJ_UNREACHABLE;
      });
}

}  // namespace runner::executors::cgroup

#include "executors/cgroup/cgroup-v1.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "executors/cgroup/cgroup-dir.h"

namespace runner::executors::cgroup {

namespace {

class JobCgroupV1 final : public JobCgroup {
 public:
  JobCgroupV1() = default;
  KJ_DISALLOW_COPY(JobCgroupV1);

  ~JobCgroupV1() noexcept(false) {
    for (auto& cgroup : cgroups) {
      if (cgroup.removed) continue;
      KJ_IF_MAYBE (exception,
                   kj::runCatchingExceptions([&]() { removeDirBlocking(cgroup.dir); })) {
        KJ_LOG(ERROR, "could not remove a job cgroup", *exception);
      }
    }
  }

  // Adds the job's (already created) cgroup in a hierarchy holding `controllers`.
  void add(kj::ArrayPtr<const kj::String> controllers, kj::String path) {
    auto names = kj::heapArrayBuilder<kj::String>(controllers.size());
    for (auto& controller : controllers) names.add(kj::heapString(controller));
    cgroups.add(Cgroup{names.finish(), CgroupDir(kj::mv(path))});
  }

  bool hasController(kj::StringPtr controller) const {
    for (auto& cgroup : cgroups) {
      for (auto& c : cgroup.controllers) {
        if (c == controller) return true;
      }
    }
    return false;
  }

  const CgroupDir& dirOf(kj::StringPtr controller) const {
    for (auto& cgroup : cgroups) {
      for (auto& c : cgroup.controllers) {
        if (c == controller) return cgroup.dir;
      }
    }
    KJ_FAIL_ASSERT("the job has no cgroup for this controller", controller);
  }

  // Opens cgroup.procs of every cgroup for spawn(); done once all are created.
  void openProcsFiles() {
    for (auto& cgroup : cgroups) {
      int fd;
      KJ_SYSCALL(fd = openat(cgroup.dir.fd(), "cgroup.procs", O_WRONLY | O_CLOEXEC),
                 cgroup.dir.path());
      procsFiles.add(fd);
      procsFds.add(fd);
    }
  }

  uint8_t version() const override { return 1; }
  // A tracking cgroup has only the freezer hierarchy; one a previous server left (open()) has
  // whichever still exist.
  kj::StringPtr path() const override {
    for (auto& cgroup : cgroups) {
      for (auto& c : cgroup.controllers) {
        if (c == "memory") return cgroup.dir.path();
      }
    }
    for (auto& cgroup : cgroups) {
      for (auto& c : cgroup.controllers) {
        if (c == "freezer") return cgroup.dir.path();
      }
    }
    KJ_ASSERT(cgroups.size() > 0);
    return cgroups[0].dir.path();
  }
  kj::Array<kj::StringPtr> allPaths() const override {
    return KJ_MAP(cgroup, cgroups) {
      return cgroup.dir.path();
    };
  }

  kj::ArrayPtr<const int> spawnProcsFds() const override { return procsFds; }

  kj::Promise<void> killAll(kj::Timer& timer) override {
    // Frozen processes cannot fork, so the pid list read while frozen is complete. SIGKILL
    // takes effect when they are thawed.
    const CgroupDir& freezer = dirOf("freezer");
    int error = freezer.tryWrite("freezer.state", "FROZEN");
    if (error != 0) KJ_FAIL_SYSCALL("write(freezer.state, FROZEN)", error, freezer.path());
    auto deadline = timer.now() + CgroupV1Driver::FREEZE_TIMEOUT_MILLIS * kj::MILLISECONDS;
    return whenFrozen(timer, deadline, 1 * kj::MILLISECONDS).then([this]() {
      const CgroupDir& freezer = dirOf("freezer");
      signalAll(SIGKILL);
      int error = freezer.tryWrite("freezer.state", "THAWED");
      if (error != 0) KJ_FAIL_SYSCALL("write(freezer.state, THAWED)", error, freezer.path());
    });
  }

  void signalAll(int signal) override {
    // Every hierarchy holds every process of the job; the freezer's is the one killing uses.
    for (pid_t pid : (hasController("freezer") ? dirOf("freezer") : cgroups[0].dir).processes()) {
      // A process that died since cgroup.procs was read is fine.
      if (kill(pid, signal) < 0 && errno != ESRCH) KJ_FAIL_SYSCALL("kill", errno, pid, signal);
    }
  }

  kj::Array<pid_t> processes() const override {
    return (hasController("freezer") ? dirOf("freezer") : cgroups[0].dir).processes();
  }

  bool isEmpty() const override {
    // Every hierarchy holds every process of the job (a process's cgroups change together, and
    // the job's processes cannot move themselves): one cgroup.procs not yet removed tells.
    if (hasController("freezer")) {
      for (auto& cgroup : cgroups) {
        if (cgroup.removed) continue;
        for (auto& c : cgroup.controllers) {
          if (c == "freezer") return cgroup.dir.processes().size() == 0;
        }
      }
    }
    for (auto& cgroup : cgroups) {
      if (!cgroup.removed) return cgroup.dir.processes().size() == 0;
    }
    return true;
  }

  uint64_t oomKillCount() const override {
    return dirOf("memory").readKeyed("memory.oom_control", "oom_kill").orDefault(0);
  }

  Usage usage() const override {
    Usage usage;
    const CgroupDir& cpuacct = dirOf("cpuacct");
    usage.cpuUserMicros = cpuacct.readNumber("cpuacct.usage_user").orDefault(0) / 1000;
    usage.cpuSystemMicros = cpuacct.readNumber("cpuacct.usage_sys").orDefault(0) / 1000;
    usage.peakMemoryBytes = dirOf("memory").readNumber("memory.max_usage_in_bytes").orDefault(0);
    usage.currentMemoryBytes = dirOf("memory").readNumber("memory.usage_in_bytes").orDefault(0);
    return usage;
  }

  void rename(kj::StringPtr jobId) override {
    for (auto& cgroup : cgroups) cgroup.dir.rename(jobId);
  }

  bool tryRemove() override {
    bool all = true;
    for (auto& cgroup : cgroups) {
      if (!cgroup.removed) cgroup.removed = tryRemoveDir(cgroup.dir.path());
      all = all && cgroup.removed;
    }
    return all;
  }

 private:
  // Resolves when the freezer reports FROZEN, or at `deadline`: a process waiting in the kernel
  // (uninterruptible sleep, e.g. a direct write held by an IO limit) keeps the cgroup FREEZING
  // for as long as that wait lasts. Checks with growing pauses, up to 50 ms apart.
  kj::Promise<void> whenFrozen(kj::Timer& timer, kj::TimePoint deadline, kj::Duration pause) {
    const CgroupDir& freezer = dirOf("freezer");
    if (freezer.read("freezer.state") == "FROZEN\n") return kj::READY_NOW;
    if (timer.now() >= deadline) {
      KJ_LOG(WARNING, "job cgroup did not freeze in time; killing it unfrozen", freezer.path());
      return kj::READY_NOW;
    }
    return timer.afterDelay(pause).then([this, &timer, deadline, pause]() {
      return whenFrozen(timer, deadline, kj::min(pause * 2, 50 * kj::MILLISECONDS));
    });
  }

  struct Cgroup {
    kj::Array<kj::String> controllers;
    CgroupDir dir;
    bool removed = false;
  };
  kj::Vector<Cgroup> cgroups;
  kj::Vector<kj::AutoCloseFd> procsFiles;
  kj::Vector<int> procsFds;
};

}  // namespace

CgroupV1Driver::CgroupV1Driver(kj::Array<CgroupV1Hierarchy> hierarchies)
    : hierarchies(kj::mv(hierarchies)) {}

namespace {

struct Need {
  kj::StringPtr controller;
  // What needs it, for errors: "memory limit", "job kill (freezer)"...
  kj::StringPtr limit;
};

// The job's cgroup, created in each distinct hierarchy `needs` name (co-mounted controllers
// share one), with no limit applied yet.
kj::Own<JobCgroupV1> createCgroups(const CgroupV1Driver& driver, kj::StringPtr jobId,
                                   kj::ArrayPtr<const Need> needs) {
  KJ_REQUIRE(jobId.size() > 0 && jobId.findFirst('/') == nullptr && jobId != "." && jobId != "..",
             "a job id must be a valid cgroup name", jobId);
  kj::Vector<const CgroupV1Hierarchy*> chosen;
  for (auto& need : needs) {
    KJ_IF_MAYBE (hierarchy, driver.find(need.controller)) {
      bool seen = false;
      for (auto h : chosen) seen = seen || h == hierarchy;
      if (!seen) chosen.add(hierarchy);
    } else {
      failLimit(need.limit, kj::str("no cgroup v1 hierarchy with the ", need.controller,
                                    " controller is mounted"));
    }
  }
  auto job = kj::heap<JobCgroupV1>();
  for (auto hierarchy : chosen) {
    kj::String path = joinPath({hierarchy->mountPoint, hierarchy->parent, jobId});
    // The parent is there but for the first job (or after someone removed it): made then.
    if (mkdir(path.cStr(), 0755) < 0) {
      int error = errno;
      if (error != ENOENT) KJ_FAIL_SYSCALL("creating the job's cgroup", error, path);
      makeDirs(hierarchy->mountPoint, hierarchy->parent);
      KJ_SYSCALL(mkdir(path.cStr(), 0755), "creating the job's cgroup", path);
    }
    job->add(hierarchy->controllers, kj::mv(path));
  }
  return job;
}

}  // namespace

kj::Own<JobCgroup> CgroupV1Driver::createTracking(kj::StringPtr jobId) {
  Need needs[] = {{"freezer", "job tracking (freezer)"}};
  auto job = createCgroups(*this, jobId, needs);
  job->openProcsFiles();
  return kj::mv(job);
}

kj::Array<kj::String> CgroupV1Driver::listJobCgroups() {
  kj::Vector<kj::String> names;
  for (auto& hierarchy : hierarchies) {
    for (auto& name : listSubdirectories(joinPath({hierarchy.mountPoint, hierarchy.parent}))) {
      bool seen = false;
      for (auto& known : names) seen = seen || known == name;
      if (!seen) names.add(kj::mv(name));
    }
  }
  return names.releaseAsArray();
}

kj::Maybe<kj::Own<JobCgroup>> CgroupV1Driver::open(kj::StringPtr name) {
  KJ_REQUIRE(name.size() > 0 && name.findFirst('/') == nullptr && name != "." && name != "..",
             "a job id must be a valid cgroup name", name);
  auto job = kj::heap<JobCgroupV1>();
  bool any = false;
  for (auto& hierarchy : hierarchies) {
    kj::String path = joinPath({hierarchy.mountPoint, hierarchy.parent, name});
    struct stat info;
    if (stat(path.cStr(), &info) < 0 || !S_ISDIR(info.st_mode)) continue;
    job->add(hierarchy.controllers, kj::mv(path));
    any = true;
  }
  if (!any) return nullptr;
  kj::Own<JobCgroup> result = kj::mv(job);
  return kj::mv(result);
}

kj::Maybe<kj::Own<JobCgroup>> CgroupV1Driver::reopen(kj::ArrayPtr<const kj::String> paths) {
  auto job = kj::heap<JobCgroupV1>();
  bool any = false;
  for (auto& path : paths) {
    const CgroupV1Hierarchy* holder = nullptr;
    for (auto& hierarchy : hierarchies) {
      if (isBelow(path, hierarchy.mountPoint)) holder = &hierarchy;
    }
    KJ_REQUIRE(holder != nullptr, "not a cgroup of a v1 hierarchy this driver knows", path);
    struct stat info;
    if (stat(path.cStr(), &info) < 0 || !S_ISDIR(info.st_mode)) continue;
    job->add(holder->controllers, kj::str(path));
    any = true;
  }
  if (!any) return nullptr;
  kj::Own<JobCgroup> result = kj::mv(job);
  return kj::mv(result);
}

kj::Maybe<const CgroupV1Hierarchy&> CgroupV1Driver::find(kj::StringPtr controller) const {
  for (auto& hierarchy : hierarchies) {
    for (auto& c : hierarchy.controllers) {
      if (c == controller) return hierarchy;
    }
  }
  return nullptr;
}

kj::Own<JobCgroup> CgroupV1Driver::create(kj::StringPtr jobId, const Limits& limits,
                                          kj::Maybe<const IoDevice&> ioDevice) {
  kj::Vector<Need> needs;
  needs.add(Need{"memory", limits.memoryBytes ? "memory limit" : "memory accounting"});
  needs.add(Need{"cpuacct", "cpu accounting"});
  needs.add(Need{"pids", limits.pids ? "pids limit" : "pids accounting"});
  needs.add(Need{"freezer", "job kill (freezer)"});
  if (limits.cpuMillicores) {
    KJ_REQUIRE(uint64_t(limits.cpuMillicores) * CPU_PERIOD_MICROS / 1000 >= 1000,
               "cpu limit too small: at least 10 millicores", limits.cpuMillicores);
    needs.add(Need{"cpu", "cpu limit"});
  }
  bool io = limits.ioReadBytesPerSec || limits.ioWriteBytesPerSec;
  if (io) {
    if (ioDevice == nullptr)
      failLimit(ioLimitName(limits), "no block device to throttle was given");
    needs.add(Need{"blkio", ioLimitName(limits)});
  }

  auto job = createCgroups(*this, jobId, needs);
  // From here on a failure destroys `job`, which removes the directories created so far.

  if (limits.cpuMillicores) {
    const CgroupDir& cpu = job->dirOf("cpu");
    uint64_t quota = uint64_t(limits.cpuMillicores) * CPU_PERIOD_MICROS / 1000;
    cpu.writeLimit("cpu limit", "cpu.cfs_period_us", kj::str(CPU_PERIOD_MICROS));
    cpu.writeLimit("cpu limit", "cpu.cfs_quota_us", kj::str(quota));
  }
  if (limits.memoryBytes) {
    const CgroupDir& memory = job->dirOf("memory");
    // The plain limit first: the kernel keeps memsw.limit >= limit at every step.
    memory.writeLimit("memory limit", "memory.limit_in_bytes", kj::str(limits.memoryBytes));
    if (memory.exists("memory.memsw.limit_in_bytes")) {
      // Memory plus swap capped at the memory limit: the job cannot use swap at all.
      memory.writeLimit("memory limit", "memory.memsw.limit_in_bytes", kj::str(limits.memoryBytes));
    } else {
      // Swap accounting is off in this kernel (no memory.memsw.* files), so swap use cannot be
      // capped; swappiness 0 keeps the kernel from swapping the job's anonymous memory out,
      // which is the closest v1 offers.
      memory.writeLimit("memory limit", "memory.swappiness", "0");
      KJ_LOG(WARNING,
             "swap accounting is off: memory limit applied with swappiness 0 instead "
             "of memory.memsw.limit_in_bytes",
             memory.path());
    }
  }
  if (limits.pids) {
    job->dirOf("pids").writeLimit("pids limit", "pids.max", kj::str(limits.pids));
  }
  if (io) {
    const CgroupDir& blkio = job->dirOf("blkio");
    auto& device = KJ_ASSERT_NONNULL(ioDevice);
    if (limits.ioReadBytesPerSec) {
      blkio.writeLimit("io-read limit", "blkio.throttle.read_bps_device",
                       kj::str(device.number(), " ", limits.ioReadBytesPerSec));
    }
    if (limits.ioWriteBytesPerSec) {
      blkio.writeLimit("io-write limit", "blkio.throttle.write_bps_device",
                       kj::str(device.number(), " ", limits.ioWriteBytesPerSec));
    }
  }
  job->openProcsFiles();
  return kj::mv(job);
}

}  // namespace runner::executors::cgroup

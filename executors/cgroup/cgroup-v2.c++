#include "executors/cgroup/cgroup-v2.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "executors/cgroup/cgroup-dir.h"

namespace runner::executors::cgroup {

namespace {

// Whether the whitespace-separated list `text` contains `word`.
bool hasWord(kj::StringPtr text, kj::StringPtr word) {
  const char* p = text.begin();
  const char* end = text.end();
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\n')) ++p;
    const char* wordEnd = p;
    while (wordEnd < end && *wordEnd != ' ' && *wordEnd != '\n') ++wordEnd;
    if (kj::ArrayPtr<const char>(p, wordEnd) == word.asArray()) return true;
    p = wordEnd;
  }
  return false;
}

class JobCgroupV2 final : public JobCgroup {
 public:
  explicit JobCgroupV2(CgroupDir dir) : dir(kj::mv(dir)) {}

  // Opens cgroup.procs for spawn(); done once the limits are written. O_CREAT only matters for
  // a plain directory standing in for cgroupfs (see CgroupDir::tryWrite()).
  void openProcsFile() {
    int fd;
    KJ_SYSCALL(fd = openat(dir.fd(), "cgroup.procs", O_WRONLY | O_CREAT | O_CLOEXEC, 0644),
               dir.path());
    procsFile = kj::AutoCloseFd(fd);
    procsFd = fd;
  }
  KJ_DISALLOW_COPY(JobCgroupV2);

  ~JobCgroupV2() noexcept(false) {
    if (removed) return;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { removeDirBlocking(dir); })) {
      KJ_LOG(ERROR, "could not remove a job cgroup", *exception);
    }
  }

  const CgroupDir& directory() const { return dir; }

  uint8_t version() const override { return 2; }
  kj::StringPtr path() const override { return dir.path(); }
  kj::Array<kj::StringPtr> allPaths() const override {
    return kj::heapArray<kj::StringPtr>({dir.path()});
  }

  kj::ArrayPtr<const int> spawnProcsFds() const override { return kj::arrayPtr(&procsFd, 1); }

  kj::Promise<void> killAll(kj::Timer& timer) override {
    // The kernel kills every process, those forking meanwhile included, before the write returns.
    int error = dir.tryWrite("cgroup.kill", "1");
    if (error != 0) KJ_FAIL_SYSCALL("write(cgroup.kill)", error, dir.path());
    return kj::READY_NOW;
  }

  void signalAll(int signal) override {
    for (pid_t pid : dir.processes()) {
      // A process that died since cgroup.procs was read is fine.
      if (kill(pid, signal) < 0 && errno != ESRCH) KJ_FAIL_SYSCALL("kill", errno, pid, signal);
    }
  }

  bool isEmpty() const override { return dir.processes().size() == 0; }

  kj::Array<pid_t> processes() const override { return dir.processes(); }

  uint64_t oomKillCount() const override {
    return dir.readKeyed("memory.events", "oom_kill").orDefault(0);
  }

  Usage usage() const override {
    Usage usage;
    usage.cpuUserMicros = dir.readKeyed("cpu.stat", "user_usec").orDefault(0);
    usage.cpuSystemMicros = dir.readKeyed("cpu.stat", "system_usec").orDefault(0);
    // memory.peak exists from Linux 5.19; older kernels have no peak counter in v2.
    usage.peakMemoryBytes = dir.readNumber("memory.peak").orDefault(0);
    usage.currentMemoryBytes = dir.readNumber("memory.current").orDefault(0);
    return usage;
  }

  void rename(kj::StringPtr jobId) override { dir.rename(jobId); }

  bool tryRemove() override {
    if (!removed) removed = tryRemoveDir(dir.path());
    return removed;
  }

 private:
  CgroupDir dir;
  kj::AutoCloseFd procsFile;
  int procsFd = -1;
  bool removed = false;
};

}  // namespace

CgroupV2Driver::CgroupV2Driver(kj::String root, kj::String parent)
    : root(kj::mv(root)), parent(kj::mv(parent)) {
  makeDirs(this->root, this->parent);
}

void CgroupV2Driver::enableControllers(kj::ArrayPtr<const Need> needs) {
  // The cgroups from the root down to the parent: each must offer the controllers to its
  // children for the job's cgroup to have them.
  kj::Vector<kj::String> chain;
  chain.add(kj::heapString(root));
  const char* p = parent.begin();
  while (p < parent.end()) {
    const char* pieceEnd = p;
    while (pieceEnd < parent.end() && *pieceEnd != '/') ++pieceEnd;
    if (pieceEnd > p) chain.add(kj::str(chain.back(), "/", kj::ArrayPtr<const char>(p, pieceEnd)));
    p = pieceEnd + 1;
  }

  for (auto& path : chain) {
    CgroupDir cgroup(kj::heapString(path));
    kj::String available = cgroup.tryRead("cgroup.controllers").orDefault(kj::heapString(""));
    kj::String enabled = cgroup.tryRead("cgroup.subtree_control").orDefault(kj::heapString(""));
    kj::Vector<kj::String> toEnable;
    kj::StringPtr firstLimit;
    for (auto& need : needs) {
      if (!hasWord(available, need.controller)) {
        failLimit(need.limit, kj::str("the ", need.controller, " controller is not available in ",
                                      path, "/cgroup.controllers"));
      }
      if (!hasWord(enabled, need.controller)) {
        if (toEnable.size() == 0) firstLimit = need.limit;
        toEnable.add(kj::str("+", need.controller));
      }
    }
    if (toEnable.size() == 0) continue;
    kj::String value = kj::strArray(toEnable, " ");
    int error = cgroup.tryWrite("cgroup.subtree_control", value);
    if (error != 0) {
      kj::StringPtr hint =
          error == EBUSY
              ? " (the cgroup has processes of its own: give runnerd a --cgroup-parent whose "
                "ancestors below the root hold no processes)"
              : "";
      failLimit(firstLimit,
                kj::str("writing \"", value, "\" to ", path,
                        "/cgroup.subtree_control: ", strerror(error), hint),
                kj::Exception::Type::FAILED);
    }
  }
}

namespace {

void requireCgroupName(kj::StringPtr jobId) {
  KJ_REQUIRE(jobId.size() > 0 && jobId.findFirst('/') == nullptr && jobId != "." && jobId != "..",
             "a job id must be a valid cgroup name", jobId);
}

// Creates the (empty) cgroup of job `jobId` below `parent`.
kj::Own<JobCgroupV2> makeJobCgroup(kj::StringPtr root, kj::StringPtr parent,
                                   kj::StringPtr jobId) {
  requireCgroupName(jobId);
  kj::String path = joinPath({root, parent, jobId});
  KJ_SYSCALL(mkdir(path.cStr(), 0755), "creating the job's cgroup", path);
  return kj::heap<JobCgroupV2>(CgroupDir(kj::heapString(path)));
}

}  // namespace

kj::Own<JobCgroup> CgroupV2Driver::createTracking(kj::StringPtr jobId) {
  auto job = makeJobCgroup(root, parent, jobId);
  job->openProcsFile();
  return kj::mv(job);
}

kj::Array<kj::String> CgroupV2Driver::listJobCgroups() {
  return listSubdirectories(joinPath({root, parent}));
}

kj::Maybe<kj::Own<JobCgroup>> CgroupV2Driver::open(kj::StringPtr name) {
  requireCgroupName(name);
  kj::String path = joinPath({root, parent, name});
  struct stat info;
  if (stat(path.cStr(), &info) < 0 || !S_ISDIR(info.st_mode)) return nullptr;
  kj::Own<JobCgroup> job = kj::heap<JobCgroupV2>(CgroupDir(kj::mv(path)));
  return kj::mv(job);
}

kj::Maybe<kj::Own<JobCgroup>> CgroupV2Driver::reopen(kj::ArrayPtr<const kj::String> paths) {
  KJ_REQUIRE(paths.size() == 1, "a v2 job has one cgroup", paths.size());
  KJ_REQUIRE(isBelow(paths[0], root), "not a cgroup of this driver's hierarchy", paths[0], root);
  struct stat info;
  if (stat(paths[0].cStr(), &info) < 0 || !S_ISDIR(info.st_mode)) return nullptr;
  kj::Own<JobCgroup> job = kj::heap<JobCgroupV2>(CgroupDir(kj::str(paths[0])));
  return kj::mv(job);
}

kj::Own<JobCgroup> CgroupV2Driver::create(kj::StringPtr jobId, const Limits& limits,
                                          kj::Maybe<const IoDevice&> ioDevice) {
  requireCgroupName(jobId);

  kj::Vector<Need> needs;
  // Always: memory.events and memory.peak are how OOM kills and peak memory are observed.
  needs.add(Need{"memory", limits.memoryBytes ? "memory limit" : "memory accounting"});
  if (limits.cpuMillicores) {
    // cpu.max takes a quota of at least 1000 microseconds per period.
    KJ_REQUIRE(uint64_t(limits.cpuMillicores) * CPU_PERIOD_MICROS / 1000 >= 1000,
               "cpu limit too small: at least 10 millicores", limits.cpuMillicores);
    needs.add(Need{"cpu", "cpu limit"});
  }
  if (limits.pids) needs.add(Need{"pids", "pids limit"});
  bool io = limits.ioReadBytesPerSec || limits.ioWriteBytesPerSec;
  if (io) {
    if (ioDevice == nullptr)
      failLimit(ioLimitName(limits), "no block device to throttle was given");
    needs.add(Need{"io", ioLimitName(limits)});
  }
  enableControllers(needs);

  auto job = makeJobCgroup(root, parent, jobId);
  // From here on a failure destroys `job`, which removes the directory again.
  const CgroupDir& dir = job->directory();
  if (limits.cpuMillicores) {
    uint64_t quota = uint64_t(limits.cpuMillicores) * CPU_PERIOD_MICROS / 1000;
    dir.writeLimit("cpu limit", "cpu.max", kj::str(quota, " ", CPU_PERIOD_MICROS));
  }
  if (limits.memoryBytes) {
    dir.writeLimit("memory limit", "memory.max", kj::str(limits.memoryBytes));
    // Swap is off for a limited job: memory.max alone would let it page out past the limit.
    dir.writeLimit("memory limit", "memory.swap.max", "0");
  }
  if (limits.pids) dir.writeLimit("pids limit", "pids.max", kj::str(limits.pids));
  if (io) {
    auto& device = KJ_ASSERT_NONNULL(ioDevice);
    kj::Vector<kj::String> fields;
    fields.add(device.number());
    if (limits.ioReadBytesPerSec) fields.add(kj::str("rbps=", limits.ioReadBytesPerSec));
    if (limits.ioWriteBytesPerSec) fields.add(kj::str("wbps=", limits.ioWriteBytesPerSec));
    dir.writeLimit(ioLimitName(limits), "io.max", kj::strArray(fields, " "));
  }
  job->openProcsFile();
  return kj::mv(job);
}

}  // namespace runner::executors::cgroup

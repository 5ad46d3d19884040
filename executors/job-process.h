#pragma once
// JobProcess: the Process of both host executors (local and cgroup), from spawn() to the job's
// end. One skeleton, two ways of finding a job's processes:
//  - a cgroup (the cgroup executor's, or the local executor's tracking cgroup): signals reach
//    every process in it, and when the main process ends everything left in it is killed
//    (systemd's KillMode=control-group) before the end is reported;
//  - without one, the main process's process group (spawn() makes it the leader of its own
//    session and group): what is still in the group when the main process ends is SIGKILLed
//    before the main process is reaped, and a process that left the group escapes.
// Either way the exit is observed once, through the main process's pidfd on the event loop, by a
// promise forked at construction: the process is reaped as soon as it ends, whether or not anyone
// waits. Destroying a JobProcess whose job still runs kills the whole job and reaps it.

#include <kj/async-unix.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "executors/cgroup/cgroup-driver.h"
#include "executors/executor.h"
#include "executors/threads.h"

namespace runner::executors {

// A job's cgroup, and what the job's end does with it.
struct JobCgroupUse {
  kj::Own<cgroup::JobCgroup> cgroup;
  // Paces the short waits after the main process has ended (for the cgroup to empty).
  kj::Timer& timer;
  // Removes the emptied cgroup, and reaps a job abandoned while it ran, off the event loop.
  Disposer& remover;
  // OOM kills and usage come from the cgroup's counters. Without (a tracking cgroup), usage is
  // the main process's own, OOM kills are not reported, and the emptied cgroup goes back to
  // `spares` for another job when there is room.
  bool accounting;
  kj::Maybe<kj::Vector<kj::Own<cgroup::JobCgroup>>&> spares;
  Placement placement;
};

// Processes of one job whose /proc files a usage read looks at, at most.
constexpr size_t USAGE_PROCESSES = 1024;

// Emptied tracking cgroups an executor keeps for its next jobs, at most.
constexpr size_t SPARE_TRACKING_CGROUPS = 32;

class JobProcess final : public Process {
 public:
  // The job whose main process is `pid` (this process's child, watched through `pidfd`), started
  // at `startTime` (processStartTime()); in `cgroup`, or its process group without one.
  // `eventPort` must outlive the JobProcess, and so must what `cgroup` refers to.
  JobProcess(kj::UnixEventPort& eventPort, pid_t pid, kj::AutoCloseFd pidfd, uint64_t startTime,
             kj::Maybe<JobCgroupUse> cgroup);
  ~JobProcess() noexcept(false);
  KJ_DISALLOW_COPY(JobProcess);

  pid_t pid() const override { return mainPid; }

  // Each call returns a new branch of the same exit; branches must not outlive this Process.
  kj::Promise<ExitStatus> onExit() override { return exited.addBranch(); }

  void signalAll(int signal) override;

  // The cgroup's counters when it has them; otherwise read from /proc for each process of the job
  // (its tracking cgroup's, or the main process alone), at most USAGE_PROCESSES of them: CPU time
  // (their own and their reaped children's), the largest peak (VmHWM) of one process, and the sum
  // of their resident memory. Cheap pseudo-files, read on the event loop.
  kj::Promise<Usage> usageSoFar() override;

  const Placement& placement() const override;

  JobTrace trace() const override;

 private:
  pid_t mainPid;
  uint64_t startTime;
  kj::AutoCloseFd pidfd;
  kj::Maybe<JobCgroupUse> inCgroup;
  ExitStatus status;
  bool reaped = false;
  // The largest peak usageSoFar() read from /proc (jobs without the cgroup's counters).
  uint64_t sampledPeak = 0;
  // The cgroup kill under way, shared by everyone who asks for one (see kill()).
  kj::Maybe<kj::ForkedPromise<void>> killing;
  bool killDone = false;
  kj::Maybe<kj::Promise<void>> requestedKill;
  Placement noPlacement;
  kj::UnixEventPort::FdObserver observer;
  // Declared last: its continuations refer to everything above.
  kj::ForkedPromise<ExitStatus> exited;

  kj::Promise<ExitStatus> finish();
  void keepSampledPeak();
  void killGroup(int signal);
  kj::Promise<void> kill();
  kj::Promise<void> killSettled();
  kj::Promise<void> finishCgroup(JobCgroupUse& use);
  kj::Promise<void> waitUntilEmpty(JobCgroupUse& use, kj::TimePoint deadline,
                                   kj::TimePoint nextKill, kj::Duration pause);
};

// Whether `pid` is a child of this process that has not been reaped (running, or ended and
// waiting to be), and was started at `startTime` (processStartTime()): after an exec, a job's main
// process that this process can watch again.
bool isUnreapedChild(pid_t pid, uint64_t startTime);

// A pidfd of `pid`, for a JobProcess watching a job again (see isUnreapedChild()).
kj::AutoCloseFd openPidfd(pid_t pid);

// SIGKILLs every process of the session and of the process group `pid` leads (as spawn() makes
// a job's main process do), itself included, unless `pid` now names a process started at another
// time than `startTime`: then the pid was given to another process, which means that no process
// of the job is left in that session or group (the kernel does not reuse a pid while a session or
// group still uses it). Reads /proc; kills again what a fork made meanwhile, a few rounds at most.
// Returns how many processes it sent SIGKILL.
size_t killSessionOf(pid_t pid, uint64_t startTime);

}  // namespace runner::executors

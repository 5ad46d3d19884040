#pragma once
// The Executor interface: how runner turns a job request into running processes.
//
// Executors take and return plain C++ structs; they never see RPC or schema types, so the
// `runner` library can translate between the wire and this interface in one place. A launch
// is asynchronous: the event loop keeps serving everyone while a job's process makes its way
// to exec (a job user's other processes can stop it there), then the returned Process reports
// the job's end through the same event loop.

#include <kj/array.h>
#include <kj/async.h>
#include <kj/function.h>
#include <kj/one-of.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <stdint.h>
#include <sys/types.h>

namespace runner::executors {

// The unprivileged identity a job runs as.
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  kj::Array<gid_t> supplementaryGroups;
  kj::String userName;
  kj::String homeDir;
};

// Resource limits; 0 in any field means "no limit".
struct Limits {
  uint32_t cpuMillicores = 0;  // 1000 = one full core
  uint64_t memoryBytes = 0;    // swap is disabled when set
  uint64_t ioReadBytesPerSec = 0;
  uint64_t ioWriteBytesPerSec = 0;
  uint32_t pids = 0;

  bool any() const {
    return cpuMillicores || memoryBytes || ioReadBytesPerSec || ioWriteBytesPerSec || pids;
  }
};

// Namespaces the job gets for itself.
struct Isolation {
  bool pid = false;
  bool mount = false;
  bool net = false;

  bool any() const { return pid || mount || net; }
};

struct LaunchRequest {
  // Used to name per-job resources (a cgroup, for instance).
  kj::String jobId;

  // argv[0] is the command: an absolute path, or a name searched in the PATH of `env`.
  kj::Array<kj::String> argv;

  // The complete environment, as "NAME=value"; nothing else is inherited.
  kj::Array<kj::String> env;

  // Absolute path; the job starts there.
  kj::String workingDir;

  // Becomes the job's stdout and stderr. Borrowed: the caller keeps it open and closes it.
  int outputFd = -1;

  Credentials credentials;
  Limits limits;
  Isolation isolation;

  // When set, runs once on the thread that creates the job's main process, before it does and
  // before anything the executor names after the job (its cgroups): what the caller must have
  // done before anything of the job exists (runner-supervisor's record of the launch), done off
  // the event loop and with no hand-off between threads of its own. What it throws fails
  // the launch with that exception, and no process is created. A launch cancelled meanwhile does
  // not wait for it (nor creates a process once it returns). Executors of this process honour it;
  // a remote executor refuses a request that carries one.
  kj::Maybe<kj::Function<void()>> beforeStart;
};

struct Usage {
  uint64_t cpuUserMicros = 0;
  uint64_t cpuSystemMicros = 0;
  uint64_t peakMemoryBytes = 0;
  // Resident memory now: only in Process::usageSoFar()'s answer for a running job.
  uint64_t currentMemoryBytes = 0;
};

// Where an executor placed the job, for status output. Each executor fills in what applies to
// it; what it has nothing to say about stays empty.
struct Placement {
  // The cgroup the job's limits are applied in (the cgroup executor's).
  struct Cgroup {
    // 1 or 2.
    uint8_t version = 0;
    kj::String path;
    // "MAJOR:MINOR (name)" of the block device the IO limits apply to; empty without them.
    kj::String ioDevice;
  };
  kj::Maybe<Cgroup> cgroup;

  Placement clone() const {
    Placement copy;
    KJ_IF_MAYBE (c, cgroup) {
      copy.cgroup = Cgroup{c->version, kj::str(c->path), kj::str(c->ioDevice)};
    }
    return copy;
  }
};

// What finds every process of a job again once the Process that watched it is gone: the process
// that launched it replaced itself with exec (its children stay its children), or crashed.
// spawn() makes the main process the leader of a session and a process group of its own, so
// `pid` names those too.
struct JobTrace {
  pid_t pid = 0;
  // Start time of `pid` (spawn.h's processStartTime()): tells the main process from a later
  // process that was given the same pid. 0 when unknown.
  uint64_t pidStartTime = 0;

  // 1 or 2, and the job's cgroup directories (one per v1 hierarchy); none without a cgroup.
  uint8_t cgroupVersion = 0;
  kj::Array<kj::String> cgroupPaths;
  // The cgroups' counters are the job's own (the cgroup executor's), not a tracking cgroup's.
  bool accounting = false;

  Placement placement;

  JobTrace clone() const {
    JobTrace copy;
    copy.pid = pid;
    copy.pidStartTime = pidStartTime;
    copy.cgroupVersion = cgroupVersion;
    copy.cgroupPaths = KJ_MAP(path, cgroupPaths) { return kj::str(path); };
    copy.accounting = accounting;
    copy.placement = placement.clone();
    return copy;
  }
};

// How the job's main process ended.
struct ExitStatus {
  // Exactly one of these is meaningful: `signaled` says which.
  bool signaled = false;
  int exitCode = 0;
  int termSignal = 0;

  // The kernel OOM-killed some process of the job, and whether that was the main process.
  bool oomKilled = false;
  bool oomKilledMain = false;

  Usage usage;

  // Non-empty when the executor lost track of the job (the process that ran it crashed): what
  // was left of the job was killed, this says why, and the fields above mean nothing.
  kj::String lost;

  ExitStatus() = default;
  ExitStatus(ExitStatus&&) = default;
  ExitStatus& operator=(ExitStatus&&) = default;
  // Copyable, as every branch of a forked end gets its own.
  ExitStatus(const ExitStatus& other) { *this = other; }
  ExitStatus& operator=(const ExitStatus& other) {
    signaled = other.signaled;
    exitCode = other.exitCode;
    termSignal = other.termSignal;
    oomKilled = other.oomKilled;
    oomKilledMain = other.oomKilledMain;
    usage = other.usage;
    lost = kj::str(other.lost);
    return *this;
  }
};

// A running job. Destroying a Process whose job still runs kills the whole job (SIGKILL)
// and reaps the main process, so no job outlives its owner by accident. Destroying one whose
// end onExit() has reported says the owner has recorded that end: an executor that keeps ends
// for its owner (a remote one) may forget it then.
class Process {
 public:
  virtual ~Process() noexcept(false) = default;

  // The main process's pid, in runnerd's PID namespace.
  virtual pid_t pid() const = 0;

  // Resolves once, when the main process has ended. By then the main process is reaped and
  // whatever else the job left running has been killed, so the output is final.
  virtual kj::Promise<ExitStatus> onExit() = 0;

  // Delivers `signal` to every process of the job (its process group, or its whole cgroup).
  // Does nothing once the job has ended.
  virtual void signalAll(int signal) = 0;

  // What the job has used so far (CPU time, peak and current memory), counted as its end's usage
  // will be; the final usage once it has ended. By default nothing is known (all 0).
  virtual kj::Promise<Usage> usageSoFar() { return Usage(); }

  virtual const Placement& placement() const = 0;

  // What finds the job's processes again without this object (see Executor::reattach() and
  // Executor::killRemains()). By default, only the main process's pid.
  virtual JobTrace trace() const {
    JobTrace trace;
    trace.pid = pid();
    return trace;
  }
};

// The command could not be started: exec (or a step before it, such as chdir) failed.
// An expected outcome, so it is data rather than an exception.
struct LaunchFailure {
  int errorNumber = 0;
  // One line, for example "exec nope: No such file or directory".
  kj::String message;
};

using LaunchResult = kj::OneOf<kj::Own<Process>, LaunchFailure>;

class Executor {
 public:
  virtual ~Executor() noexcept(false) = default;

  virtual kj::StringPtr name() const = 0;

  // Starts the job; resolves once it has exec'd (a Process) or failed to (a LaunchFailure,
  // also when it did not reach exec within spawn.h's LAUNCH_TIMEOUT). Throws at once for a
  // request that can never work (empty argv, root credentials, a limit this executor cannot
  // apply: the message names the limit). The request is needed only during the call; its
  // output fd may be closed once the call has returned. Cancelling the promise kills the
  // process and frees whatever was made for it (a cgroup). Must be called on the thread
  // running the event loop the executor was built with.
  virtual kj::Promise<LaunchResult> launch(LaunchRequest&& request) = 0;

  // For a process that replaced itself with exec while its jobs ran on: the job `trace` describes
  // (Process::trace() of a Process this executor returned before the exec), watched again. Its
  // main process must still be this process's child, running or not yet reaped. Throws when the
  // executor cannot (UNIMPLEMENTED by default).
  virtual kj::Own<Process> reattach(const JobTrace& trace);

  // For job `jobId`, whose Process is gone for good (the process that watched it crashed): kills
  // every process of the session and the process group its main process led, unless that pid now
  // names another process, and every process in its cgroups, which are removed (those `trace`
  // names, or those named after `jobId` when it names none: the job was being launched). Resolves
  // once the kills are sent; a process waiting in the kernel dies, and its cgroup goes, later, on
  // a thread of the executor's. Never waits on a child or a disk.
  virtual kj::Promise<void> killRemains(kj::StringPtr jobId, const JobTrace& trace);

  // Before this process replaces itself with exec: gives back what the executor keeps for later
  // jobs (spare cgroups), and resolves once its threads have nothing left to do.
  virtual kj::Promise<void> drain() { return kj::READY_NOW; }

  // At start-up, before the first launch: kills every process that a previous run of this server
  // left in what this executor names after jobs (cgroups), for each name `isOurs` accepts, and
  // removes those; returns the names. Processes still waiting in the kernel die, and their
  // cgroups go, on a thread of the executor's once that wait is over. The default has nothing
  // named after jobs.
  virtual kj::Array<kj::String> sweepLeftovers(
      kj::FunctionParam<bool(kj::StringPtr name)> isOurs) {
    return nullptr;
  }

  // Whether this executor's jobs outlive the server (another process runs them): then a server
  // that stops leaves them running, and the next one takes them back with adopt(). The jobs of
  // an executor in the server's own process die with it.
  virtual bool keepsJobs() const { return false; }

  // At start-up, for an executor that keepsJobs(): the job `jobId` a previous run of the server
  // launched, as a Process (running, or ended and not yet taken), or nullptr when the executor
  // does not hold it.
  virtual kj::Promise<kj::Maybe<kj::Own<Process>>> adopt(kj::StringPtr jobId) {
    return kj::Maybe<kj::Own<Process>>(nullptr);
  }

  // At start-up, for an executor that keepsJobs(): kills and forgets every job it holds that
  // `isKnown` rejects (launched by a server that crashed before recording it); resolves with
  // their ids once they are gone.
  virtual kj::Promise<kj::Array<kj::String>> discardUnknown(
      kj::Function<bool(kj::StringPtr jobId)> isKnown) {
    return kj::Array<kj::String>(nullptr);
  }
};

// Executors by name, built in main() and handed to whoever launches jobs.
// `executor` under another name: everything else is `executor`'s own. Lets one process serve an
// executor under the name its clients ask for (runner-supervisor --executor NAME=KIND).
kj::Own<Executor> renamed(kj::Own<Executor> executor, kj::StringPtr name);

class ExecutorSet {
 public:
  void add(kj::Own<Executor> executor);

  // The executor called `name`, if any.
  kj::Maybe<Executor&> find(kj::StringPtr name);

  // Names of all executors, in the order they were added.
  kj::Array<kj::StringPtr> names() const;

 private:
  kj::Vector<kj::Own<Executor>> executors;
};

}  // namespace runner::executors

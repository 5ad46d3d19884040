#pragma once
// JobTable: every job this server knows, running or ended, and the state machine that moves
// them from `running` to their end.
//
// The table opens each job's output file, hands it to an executor, watches the process
// through the event loop, and writes every state change to the store before anyone can
// observe it: the store's writes and the output files' creation run on threads of their own
// (StoreWriter, OutputFiles), so the event loop never waits for a disk. A start is answered
// once the job's record is on disk; a job's end is seen by no one (its record, info, wait,
// followers) until the end is on disk, and until then the job still looks running. An ended
// job may be forgotten by its owner's retention (JobTableConfig's maxStoredPerUser); a `Job&`
// stays valid while it is held (Job::hold()), and a running job is never forgotten. An ended job
// may also be removed (JobTable::remove(), by a user or by the server's retention of ended jobs):
// it leaves the table at once, but a held one stays in memory, marked removed, until its last
// holder lets go.

#include <kj/async.h>
#include <kj/map.h>
#include <kj/time.h>
#include <kj/vector.h>

#include "executors/executor.h"
#include "runner/event-log.h"
#include "runner/identities.h"
#include "runner/job-metrics.h"
#include "runner/job-names.h"
#include "runner/job-record.h"
#include "runner/output-files.h"
#include "runner/output-watcher.h"
#include "runner/wakeup.h"

namespace runner {

class Store;
class StoreWriter;

// The one-line error of a start whose output file could not be made in time.
constexpr kj::StringPtr OUTPUT_NOT_ANSWERING =
    "the log directory is not answering (its disk is frozen or failing); try again later"_kj;

// What a user asks to run, already translated from the wire.
struct StartRequest {
  kj::String command;
  kj::Array<kj::String> args;
  // Extra environment as "NAME=value"; overrides the defaults of the same name.
  kj::Array<kj::String> env;
  // Empty: the home directory of the user the job runs as when it exists, else "/".
  kj::String workingDir;
  executors::Limits limits;
  executors::Isolation isolation;
  // Empty: the table's default executor.
  kj::String executor;
  // 0: the table's maxOutputBytes; more than that is refused.
  uint64_t maxOutputBytes = 0;
  // Empty: none. Checked by start() (job-names.h), as are the labels.
  kj::String name;
  kj::Array<JobLabel> labels;
  // 0: none; at most MAX_TIMEOUT_MILLIS (see JobRecord).
  uint64_t timeoutMillis = 0;
  uint64_t idleTimeoutMillis = 0;
};

// The longest timeout a job may ask for: 10 years.
constexpr uint64_t MAX_TIMEOUT_MILLIS = uint64_t(10) * 366 * 24 * 3600 * 1000;

struct JobTableConfig {
  // Output files live here as <id>.log, beside a few empty .spare-* files made ahead of need
  // (see OutputFiles).
  kj::String logDir;
  // Who each owner's jobs run as. Never root.
  kj::Own<OwnerIdentities> identities;
  kj::String defaultExecutor;
  // Grace period of a stop that does not name one.
  kj::Duration defaultGrace = 10 * kj::SECONDS;
  // Ended jobs kept per owner, by number and by the size of their records; past either, the
  // oldest ended ones (not held by a client) are forgotten: record, events and output.
  uint32_t maxStoredPerUser = 10000;
  uint64_t maxStoredBytesPerUser = uint64_t(256) << 20;
  // ... and over all owners: past it, the owner who keeps the most gives way first.
  uint64_t maxStoredBytes = uint64_t(1) << 30;
  // Writes queued for the state store, or requests for the log directory, past which a start is
  // refused at once (the disk is not answering, and clients that retry must not make the queues
  // grow without end).
  size_t maxDiskBacklog = 4096;
  // Jobs one owner may have running (or starting) at once.
  uint32_t maxRunningPerUser = 256;
  // The most output a job may write; a spec may ask for less.
  uint64_t maxOutputBytes = uint64_t(64) << 30;
  // Ended jobs of all owners are removed once they ended this long ago (runnerd --retain-for);
  // nullptr: whatever their age.
  kj::Maybe<kj::Duration> retainFor;
  // ... and past this many ended jobs over all owners, the oldest (by creation) first (runnerd
  // --retain-jobs); 0: however many. Both leave alone a job a client holds.
  uint32_t retainJobs = 0;
};

class Job;

// What a Job uses of the table it belongs to; the table makes it and it outlives every job. The
// table reaches into its jobs (it is Job's friend), never the other way round.
struct JobContext {
  const JobTableConfig& config;
  kj::Timer& timer;
  StoreWriter& writer;
  OutputFiles& outputFiles;
  kj::TaskSet& tasks;
  EventLog& log;
  // The job has ended and its end is published: it counts against its owner's retention.
  kj::Function<void(Job&)> ended;
  // Whether the log directory's file system has (almost) no room left for unprivileged writers.
  kj::Function<bool()> logFilesystemFull;
  // The last holder of a removed job let go of it: the job can go.
  kj::Function<void(Job&)> released;
  JobMetrics& metrics;
};

class Job {
 public:
  KJ_DISALLOW_COPY(Job);

  const JobRecord& record() const { return rec; }
  kj::StringPtr id() const { return rec.id; }
  kj::StringPtr outputPath() const { return path; }
  bool hasEnded() const { return runner::hasEnded(rec.state); }

  // Bytes of output so far (the size of the output file; 0 when it is gone).
  uint64_t outputBytes() const;

  // When its output arrived (output-times.h), up to now. A job that ended before runnerd kept
  // these has one sample: all its output by its end. After a restart of runnerd, what a running
  // job wrote before it shares one sample: the output file's last write before the restart.
  kj::Array<OutputSample> outputTimes();

  // Resolves once the job has ended (at once if it has). Rejects with STORE_NOT_ANSWERING when
  // the job's end has not reached the disk within STORE_DEADLINE.
  kj::Promise<void> whenEnded();

  // Use JobTable::start().
  Job(JobContext& context, JobRecord record, kj::String path);

  // Sends SIGTERM to every process of the job, and SIGKILL once `grace` has passed (at once for
  // a zero grace). Resolves when the job has ended; the job ends `stopped`.
  kj::Promise<void> stop(kj::Maybe<kj::Duration> grace);

  // Delivers `signal` to every process of the running job; false when it has ended (or is
  // ending: its main process is gone).
  bool signal(int signal);

  // What the job has used so far (its executor's count while it runs, the final usage after);
  // 0s when the executor does not answer within USAGE_DEADLINE.
  kj::Promise<executors::Usage> usageSoFar();
  static constexpr kj::Duration USAGE_DEADLINE = 1 * kj::SECONDS;

  // Resolves at the next write to the output or at the job's end, possibly spuriously. Call it
  // before re-reading the output, so that no write can slip between the read and the wait.
  kj::Promise<void> outputChanged();

  // Resolves after `delay`, during which the job's writes do not wake the event loop, as a change
  // then would (OutputWatcher::Watch::pause()): for a follower that found the output streaming.
  // At once, with no pause, when the output is within GATHER_LIMIT_MARGIN of its limit, which is
  // checked at each change.
  kj::Promise<void> outputGathered(kj::Duration delay);
  static constexpr uint64_t GATHER_LIMIT_MARGIN = 256ull << 20;

  // The event loop's timer, for those who wait on the job.
  kj::Timer& timer() { return context.timer; }

  // What the table counts for the metrics (followers count themselves there).
  JobMetrics& metrics() { return context.metrics; }

  // While held (by a capability or a watch that refers to it), the job is never forgotten, and
  // once removed it stays in memory (no longer in the table) until released.
  void hold() { ++holders; }
  void release();

  // Whether JobTable::remove() removed the job.
  bool isRemoved() const { return removed; }
  // "conflict: job ID was removed", which every use of a removed job answers (FAILED).
  kj::Exception removedError() const;
  // Rejects with removedError() once the job is removed (at once if it is).
  kj::Promise<void> whenRemoved();

 private:
  friend class JobTable;

  JobContext& context;
  JobRecord rec;
  kj::String path;
  // Its place in the order of creation: list cursors are sequence numbers.
  uint64_t seq = 0;
  uint32_t holders = 0;
  bool removed = false;
  Wakeup removal;
  // What it counts against its owner's stored bytes.
  size_t storedBytes = 0;
  // While it runs: the output file (its size is checked against the limit at each change) and
  // its place in its owner's count of running jobs.
  kj::AutoCloseFd output;
  kj::Own<void> runningSlot;
  kj::Maybe<kj::Promise<void>> outputLimit;
  // When its output arrived, noted at each change of the file (by enforceOutputLimit()).
  OutputTimes times;
  kj::Maybe<kj::Own<executors::Process>> process;
  kj::Maybe<kj::Own<OutputWatcher::Watch>> watch;
  Wakeup ended;
  // Set once the process has ended but its end is still being written; cleared when published.
  kj::Maybe<kj::Promise<void>> endDeadline;
  bool endStalled = false;
  bool stopRequested = false;
  kj::Maybe<kj::TimePoint> killDeadline;
  kj::Maybe<kj::Promise<void>> killTimer;
  // The timeouts of rec.timeoutMillis and rec.idleTimeoutMillis while the job runs.
  kj::Maybe<kj::Promise<void>> timeoutTimer;
  kj::Maybe<kj::Promise<void>> idleTimer;

  // Has the output files' thread give back the blocks the job allocated past the end of its
  // output file (fallocate with FALLOC_FL_KEEP_SIZE), which would hold the log file system's
  // room for nothing.
  void releaseBlocksPastEnd();
  // The process has ended: records the end, and publishes it (markEnded) once it is durable.
  void finish(const executors::ExitStatus& status);
  void markEnded();
  // Kills the job once its output reaches rec.maxOutputBytes.
  kj::Promise<void> enforceOutputLimit();
  // Arms the timers of the job's timeouts, from its recorded start and its output file's last
  // write; watchIdle() looks again each time the idle period would be over, until it is.
  void armTimeouts();
  kj::Promise<void> watchIdle();
  // A timeout passed: stops the job as a user's stop with the default grace does, remembering
  // why (the reason, and `why` in its error).
  void timedOut(EndReason reason, kj::String why);
};

// What `list` selects (see schema/runner.capnp's ListFilter).
struct ListQuery {
  // Only this owner's jobs; nullptr: everyone's.
  kj::Maybe<kj::StringPtr> owner;
  // Bit (1 << JobState) set for each state wanted; 0: any.
  uint32_t states = 0;
  // The newest this many; 0: all.
  uint32_t limit = 0;
  // The `next` of the previous page, or empty.
  kj::StringPtr after;
  // Empty: any name. Otherwise only jobs of this name.
  kj::StringPtr name;
  // Only jobs that carry every one of these labels.
  kj::ArrayPtr<const JobLabel> labels;
};

// What prune() removed: jobs, and the bytes of output they held.
struct PruneResult {
  uint32_t removed = 0;
  uint64_t bytes = 0;
};

// Jobs removed (by prune() or the retention of ended jobs) in one turn of the event loop at most,
// and jobs looked at for them: a big backlog is worked off over many turns, others being served
// in between.
constexpr size_t REMOVE_PER_TURN = 64;
constexpr size_t REMOVE_SCAN_PER_TURN = 4096;

struct ListPage {
  kj::Vector<Job*> jobs;
  // Where the next page starts; nullptr when this is the last.
  kj::Maybe<kj::String> next;
};

// The bounds of one page of `list`: jobs, their estimated size on the wire (the RPC system sends
// no message larger than it would read, 2 MiB; one job of the largest spec still fits), and jobs
// looked at.
constexpr size_t LIST_PAGE_JOBS = 1000;

// Below this much free space on the log directory's file system, a start is refused and a job
// that ends is reported as having perhaps lost output.
constexpr uint64_t LOG_ROOM_BYTES = 64 * 1024;
constexpr size_t LIST_PAGE_BYTES = 1024 * 1024;
constexpr size_t LIST_SCAN_JOBS = 100000;

class JobTable {
 public:
  JobTable(JobTableConfig config, executors::ExecutorSet& executors, Store& store, kj::Timer& timer,
           OutputWatcher& watcher, EventLog& log);
  ~JobTable() noexcept(false);
  KJ_DISALLOW_COPY(JobTable);

  // Loads every job the store knows, and resolves once every job recorded as running has been
  // taken back or ended. A running job of an executor that keeps its jobs across restarts
  // (another process runs them) is taken back (Executor::adopt): it runs on, or reports the end
  // it reached meanwhile; one that executor no longer holds becomes `lost`, and jobs it holds
  // that the store does not know (a start cut short by a crash) are discarded. A running job of
  // an executor in runnerd's own process is killed, since nothing can observe its end any more,
  // and becomes `lost`: its process group, and every process in the cgroups named after this
  // server's jobs (the executors' sweepLeftovers()), which are removed. Output files named like
  // a job's that the store does not know are removed. Call once, before the first start.
  kj::Promise<void> load();

  // Starts a job owned by `owner`; resolves once the executor's launch has resolved and the
  // job's record is on disk, with the job in the table (`running`, or `failed` for a command that
  // could not be started or did not reach exec in time). Until then the job is nowhere: not in
  // the table, not in the store; its output file exists, and is removed if the launch throws or
  // is cancelled. When the record cannot be written within STORE_DEADLINE, or fails, the job is
  // killed, its record is removed again once the store answers, and the start fails with one
  // clear line (STORE_NOT_ANSWERING, or that the job could not be recorded); so does a start
  // whose output file is not made within STORE_DEADLINE (OUTPUT_NOT_ANSWERING). Throws at once
  // for a request that can never run (empty command, unknown
  // executor, a bad environment entry, a limit the executor cannot apply). The job is never
  // null (KJ promises cannot carry references), and is held (Job::hold()) once for the caller,
  // who releases it when done with it, so that retention cannot forget it meanwhile.
  kj::Promise<Job*> start(kj::StringPtr owner, StartRequest&& request);

  kj::Maybe<Job&> find(kj::StringPtr id);

  // The job `text` names for `caller`, as JobManager.get resolves it (schema/runner.capnp): a
  // full id, else the name of one of the caller's jobs, else a prefix of at least
  // MIN_ID_PREFIX_CHARS characters of exactly one job's id. nullptr when it names none; throws a
  // one-line error for a prefix several jobs share (listing them) or one too short to use.
  // O(log jobs + MAX_PREFIX_CANDIDATES).
  kj::Maybe<Job&> resolve(kj::StringPtr caller, kj::StringPtr text);

  // All jobs in the order they were created.
  kj::ArrayPtr<Job* const> all() const { return order; }

  // One page of the jobs `query` selects, oldest first. Costs O(page + LIST_SCAN_JOBS) whatever
  // the number of stored jobs. Throws for a `query.after` this table did not make.
  ListPage list(const ListQuery& query) const;

  const JobTableConfig& config() const { return cfg; }

  // Removes an ended job that is not removed yet: at once from the table (find() and list() no
  // longer see it), then its record from the store, then its output file, both off the event
  // loop, in that order; resolves once both are gone with the bytes of output it held. Rejects
  // with STORE_NOT_ANSWERING when the store has not removed the record within STORE_DEADLINE
  // (the file goes once it has), and with one clear line when the store failed (the record, and
  // the file, come back when runnerd restarts).
  // `by` says who or what removed it, for the log ("by alice", "by --retain-for").
  kj::Promise<uint64_t> remove(Job& job, kj::StringPtr by);

  // Removes the ended jobs of `owner` (of everyone: nullptr) that ended at Unix time `endedBy`
  // (milliseconds) or before, REMOVE_PER_TURN at a time; resolves once all are gone.
  kj::Promise<PruneResult> prune(kj::Maybe<kj::StringPtr> owner, int64_t endedBy);

  // For the metrics: what the table counts, the running (or starting) jobs of each owner that
  // has any, the store's commit times, its writes waiting, and how long the oldest write has
  // waited (nullptr when none waits).
  const JobMetrics& metrics() const { return jobMetrics; }
  const kj::HashMap<kj::String, uint32_t>& runningByOwner() const { return running; }
  Histogram storeLatency() const;
  size_t storeBacklog() const;
  kj::Maybe<kj::Duration> storeWaiting() const;

 private:
  JobTableConfig cfg;
  OutputFiles outputFiles;
  executors::ExecutorSet& executors;
  // Read and written synchronously only by load(), before serving; then written through writer.
  Store& store;
  kj::Own<StoreWriter> writer;
  kj::Timer& timer;
  OutputWatcher& watcher;
  EventLog& log;
  kj::HashMap<kj::StringPtr, kj::Own<Job>> jobs;
  // The same jobs ordered by id, for prefixes.
  kj::TreeMap<kj::StringPtr, Job*> byId;
  // Each owner's names in use, by owner and name: the job of that name, or nullptr while a start
  // of that name is under way (a second start of it is refused meanwhile).
  kj::HashMap<kj::String, kj::HashMap<kj::String, Job*>> names;
  class NameClaim;
  kj::Vector<Job*> order;
  // Each owner's jobs in the order they were created, and what its ended ones hold.
  struct OwnerJobs {
    kj::Vector<Job*> jobs;
    uint32_t ended = 0;
    uint64_t storedBytes = 0;
  };
  kj::HashMap<kj::String, OwnerJobs> byOwner;
  // What the ended jobs of all owners hold.
  uint64_t storedBytes = 0;
  uint64_t nextSeq = 0;
  // Jobs running or starting, per owner (owners with none are not in it).
  kj::HashMap<kj::String, uint32_t> running;
  JobMetrics jobMetrics;
  // Removed jobs still held by a client, by sequence number.
  kj::HashMap<uint64_t, kj::Own<Job>> removedHeld;
  // The retention of ended jobs (cfg.retainFor, cfg.retainJobs): the periodic timer, whether a
  // sweep is under way, and whether another was asked for meanwhile.
  kj::Maybe<kj::Promise<void>> retentionTimer;
  bool sweeping = false;
  bool sweepAgain = false;
  LoggedTaskErrors errorHandler;
  kj::TaskSet tasks;
  // What the jobs use of the table.
  JobContext jobContext;

  Job& add(JobRecord record);
  // Counts an ended job against its owner's retention, and forgets the oldest ended jobs past it.
  void ended(Job& job);
  void forgetPastRetention(kj::StringPtr owner);
  // Forgets the oldest ended jobs of the owner who keeps the most, while all keep more than
  // maxStoredBytes.
  void forgetPastTotal();
  void forget(Job& job);
  // Takes an ended job out of the table's indexes and counts; returns it.
  kj::Own<Job> detach(Job& job);
  // One batch of prune(): from the job with sequence number `fromSeq` on.
  kj::Promise<PruneResult> pruneFrom(kj::Maybe<kj::String> owner, int64_t endedBy, uint64_t fromSeq,
                                     PruneResult sofar);
  // The retention of ended jobs: a sweep over every job, REMOVE_PER_TURN removals and
  // REMOVE_SCAN_PER_TURN jobs a turn, started by the timer and by each end (one at a time).
  void startRetention();
  kj::Promise<void> retentionTicks(kj::Duration period);
  void requestSweep();
  // `excess`: how many more ended jobs to remove, oldest first, for cfg.retainJobs.
  kj::Promise<void> sweepFrom(uint64_t fromSeq, uint64_t excess);
  // Whether the log directory's file system has less than LOG_ROOM_BYTES (or no inode) left for
  // unprivileged writers.
  bool logFilesystemFull() const;
  // Counts one more running job of `owner` until the result is dropped; throws OVERLOADED at
  // the limit, unless `overLimit` (a job taken back after a restart runs already).
  kj::Own<void> takeRunningSlot(kj::StringPtr owner, bool overLimit = false);
  // A job recorded as running, taken back from its executor after a restart.
  void resume(Job& job, kj::Own<executors::Process> process);
  // start(), once the owner's identity is ready.
  kj::Promise<Job*> startPrepared(kj::StringPtr owner, StartRequest&& request,
                                  executors::Executor& executor, kj::String executorName,
                                  uint64_t maxOutput, kj::Own<void> slot,
                                  kj::Maybe<kj::Own<NameClaim>> claim);
  kj::Array<kj::String> buildEnvironment(kj::ArrayPtr<const kj::String> extra,
                                         const executors::Credentials& user);
};

// A new random (version 4) UUID.
kj::String newJobId();

}  // namespace runner

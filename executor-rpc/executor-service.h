#pragma once
// ExecutorService: serves an ExecutorSet as schema/executor.capnp's ExecutorHost, and holds the
// jobs it launched, by job id, until their ends are acknowledged.
//
// The jobs belong to the service, not to a connection: a client that goes away leaves them
// running and their ends kept, and a client that connects later finds them (Executor.list) and
// takes them back (Executor.adopt) or lets them go (Executor.discard).
//
// Every job held has a record on disk (HeldRecords), written before its executor launches it, so
// that the jobs also outlive the service: a service in a process that replaced itself with exec
// watches them again, and one whose predecessor crashed kills what is left of them and keeps them
// as ended, lost (recover()). Ended jobs are kept, with or without a Process, until acknowledged.
//
// Every request is checked as if it came from a hostile client: a job id must be a plain name (it
// names a cgroup and a record), a job never runs as uid or gid 0 nor with group 0, its uid must be
// one the service grants, and the output arrives as a descriptor the client already holds, never
// as a path. Refusals are logged, one line each.

#include <kj/function.h>
#include <kj/map.h>
#include <kj/refcount.h>
#include <kj/timer.h>

#include "executor-rpc/held-records.h"
#include "executors/executor.h"
#include "schema/executor.capnp.h"

namespace runner::executor_rpc {

// Makes ready what a job's user needs before the job is launched (its home).
class UserPreparation {
 public:
  virtual ~UserPreparation() noexcept(false) = default;
  // Runs on the thread that creates the job's process, before the launch's first record is
  // written; launches run on several threads, so calls may come at the same time. Throws one line
  // to refuse the launch.
  virtual void prepare(const executors::Credentials& credentials) const = 0;
};

// What the service grants.
struct LaunchPolicy {
  // The uids jobs may run as, both included.
  uint32_t firstUid = 1;
  uint32_t lastUid = 0xfffffffeu;
  // Jobs held at most, running or ended and not acknowledged (launches under way included):
  // past it, launches are refused (OVERLOADED) until runnerd acknowledges ends.
  size_t maxHeldJobs = 65536;
  // Must outlive the executors' threads (a launch given up may still call it), as the service's
  // HeldRecords must.
  kj::Maybe<const UserPreparation&> preparation;
};

// How many launch steps may still run; counted on the event loop.
struct LaunchStepCount : public kj::Refcounted {
  size_t count = 0;
};

class ExecutorService {
 public:
  // `executors`, `records` and `timer` must outlive the service, and `records` the executors too
  // (their launcher threads write launch records); `timer` keeps the disk deadline
  // and the grace of stopAll(). `log` receives one line per event (a launch refused, a job
  // started, ended, acknowledged, discarded, re-attached or lost).
  ExecutorService(executors::ExecutorSet& executors, HeldRecords& records, kj::Timer& timer,
                  LaunchPolicy policy, kj::Function<void(kj::StringPtr)> log);
  // Kills every job still running (the Processes' destructors).
  ~ExecutorService() noexcept(false);
  KJ_DISALLOW_COPY(ExecutorService);

  // A bootstrap capability for one more connection.
  wire::ExecutorHost::Client newHost();

  // At start-up, before serving: takes the jobs of `records` (HeldRecords::load()). A running job
  // whose main process is still this process's child (it replaced itself with exec) is watched
  // again by its executor; any other job that was running or being launched is killed, whatever
  // is left of it (its predecessor crashed: see Executor::killRemains()), and kept as ended with
  // ExitStatus.lost saying so; an ended job is kept as it ended. Resolves once every kill is sent.
  kj::Promise<void> recover(kj::Array<HeldRecord> records);

  // Refuses launches from now on, sends SIGTERM to every running job and SIGKILL to what still
  // runs `grace` later (or at hurry()), and resolves once every job has ended and every record is
  // written (or the disk deadline passed).
  kj::Promise<void> stopAll(kj::Duration grace);
  void hurry();

  // Before this process replaces itself with exec: refuses launches, and resolves once nothing
  // would be lost by it: no launch under way, no job between its reaping and its recorded end,
  // every record written, every executor drained. Rejects with one line saying what is still
  // busy when that takes longer than `deadline`. busyWith() is nullptr right after it resolves;
  // check it again before the exec. resume() lets launches in again.
  kj::Promise<void> quiesce(kj::Duration deadline);
  kj::Maybe<kj::String> busyWith();
  void resume();

  // Jobs held: running, or ended and not acknowledged.
  size_t heldCount() const { return held.size(); }

  // Longest job id accepted.
  static constexpr size_t MAX_JOB_ID = 64;
  // The default of LaunchPolicy::maxHeldJobs.
  static constexpr size_t MAX_HELD_JOBS = 65536;
  // How long a launch waits for the disk (its home, its record) before it is refused.
  static constexpr kj::Duration DISK_DEADLINE = 10 * kj::SECONDS;
  // How long an ended job's record may wait for runnerd's acknowledgement before it is synced.
  static constexpr kj::Duration END_SYNC_DELAY = 100 * kj::MILLISECONDS;

  // ExitStatus.lost of a job whose supervisor crashed while it ran.
  static constexpr kj::StringPtr LOST_WITH_SUPERVISOR =
      "the supervisor ended while the job was running (it crashed or was killed); the next "
      "supervisor killed what was left of the job"_kj;
  // ExitStatus.lost of a job that was running when the machine restarted.
  static constexpr kj::StringPtr LOST_WITH_MACHINE =
      "the machine restarted while the job was running"_kj;

 private:
  struct Held;
  struct Launch;
  struct Refusal;
  class HostServer;
  class ExecutorServer;
  class JobServer;
  // The accounts of job uids, as NSS gives them, kept while /etc/passwd and /etc/group are
  // unchanged and for at most MAX_AGE: a lookup of a uid without an account walks every NSS
  // source (files, then systemd's userdb directories), which cost each launch as much as the
  // rest of its checks together.
  class Accounts {
   public:
    struct Account {
      uint32_t gid;
      // Every group the account is a member of, its primary group among them.
      kj::Array<uint32_t> groups;
    };
    // The account of `uid` (nullptr: it has none); throws one line when NSS cannot say.
    kj::Maybe<const Account&> find(uint32_t uid, kj::TimePoint now);
    static constexpr kj::Duration MAX_AGE = 10 * kj::SECONDS;
    static constexpr size_t MAX_ENTRIES = 4096;

   private:
    struct Entry {
      kj::Maybe<Account> account;
      kj::TimePoint read;
    };
    kj::HashMap<uint32_t, Entry> entries;
    // What stat() said of /etc/passwd and /etc/group when the entries were read.
    kj::Array<uint64_t> stamp;
  };
  class TaskErrors final : public kj::TaskSet::ErrorHandler {
   public:
    explicit TaskErrors(ExecutorService& service) : service(service) {}
    void taskFailed(kj::Exception&& exception) override;

   private:
    ExecutorService& service;
  };

  executors::ExecutorSet& executors;
  HeldRecords& records;
  kj::Timer& timer;
  LaunchPolicy policy;
  kj::Function<void(kj::StringPtr)> log;
  kj::String bootId;
  Accounts accounts;
  kj::HashMap<kj::StringPtr, kj::Own<Held>> held;
  // Ids of launches under way: a second launch of the same id is refused.
  kj::HashSet<kj::String> launching;
  // Launch steps (a record written on a launcher thread) that may still run, including those of
  // launches given up: an exec waits for them. Shared with the steps, which the executors' threads
  // may hold past the service (a launch given up as the supervisor stops).
  kj::Own<LaunchStepCount> launchHooks = kj::refcounted<LaunchStepCount>();
  bool stopping = false;
  bool quiescing = false;
  kj::Own<kj::PromiseFulfiller<void>> hurried;
  kj::Promise<void> hurriedPromise = nullptr;
  TaskErrors taskErrors;
  // Record writes and removals nobody waits for.
  kj::TaskSet tasks;

  kj::Maybe<Refusal> refuse(wire::LaunchRequest::Reader request, kj::StringPtr jobId,
                            kj::StringPtr executor);
  kj::Promise<void> withinDiskDeadline(kj::Promise<void> promise);
  // Logs the failed writes of records posted (HeldRecords::post()), as they come.
  kj::Promise<void> logRecordFailures();
  Held& hold(kj::Own<Held> job);
  void watch(Held& job);
  HeldRecord recordOf(const Held& job) const;
  kj::Maybe<Held&> find(kj::StringPtr jobId, kj::StringPtr executor);
  // Forgets the job; resolves once its record is removed.
  kj::Promise<void> forget(kj::StringPtr jobId);
  kj::Promise<void> waitUntilQuiet(kj::TimePoint deadline);
  kj::Promise<void> whenRecordsWritten(kj::TimePoint deadline);
};

}  // namespace runner::executor_rpc

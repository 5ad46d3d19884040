#include "executor-rpc/executor-service.h"

#include <capnp/capability.h>
#include <grp.h>
#include <kj/debug.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "executor-rpc/held-job.h"
#include "runner/printable.h"
#include "runner/user-error.h"

namespace runner::executor_rpc {

bool isPlainName(kj::StringPtr id) {
  if (id.size() == 0 || id.size() > ExecutorService::MAX_JOB_ID) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Groups are privileges too (disk, shadow, docker): a job gets the groups of its uid and no
// others. A uid with an account (accounts, --run-as) gets its primary group and the groups it is a
// member of; a uid without one (runnerd's dynamic uids) gets ids from the range it was granted.
// `primaryGid` and `memberOf` are its account's, if it has one.
kj::Maybe<kj::String> refuseGroups(uint32_t uid, uint32_t gid, capnp::List<uint32_t>::Reader groups,
                                   kj::Maybe<uint32_t> primaryGid,
                                   kj::ArrayPtr<const uint32_t> memberOf, uint32_t first,
                                   uint32_t last) {
  KJ_IF_MAYBE (primary, primaryGid) {
    if (gid != *primary) {
      return kj::str("gid ", gid, " is not the primary group of uid ", uid, " (", *primary, ")");
    }
    for (auto group : groups) {
      bool ok = false;
      for (auto m : memberOf) ok = ok || m == group;
      if (!ok) return kj::str("group ", group, " is not one of the groups of uid ", uid);
    }
    return nullptr;
  }
  auto granted = [&](uint32_t id) { return id >= first && id <= last; };
  if (!granted(gid)) {
    return kj::str("gid ", gid, " is outside the ids this supervisor grants (", first, "-", last,
                   ")");
  }
  for (auto group : groups) {
    if (!granted(group)) {
      return kj::str("group ", group, " is outside the ids this supervisor grants (", first, "-",
                     last, ")");
    }
  }
  return nullptr;
}

// The identity of /etc/passwd and /etc/group as they are now: device, inode, size, change time.
kj::Array<uint64_t> accountFilesStamp() {
  kj::Vector<uint64_t> stamp;
  for (const char* path : {"/etc/passwd", "/etc/group"}) {
    struct stat st;
    if (stat(path, &st) < 0) {
      stamp.addAll(std::initializer_list<uint64_t>{0, 0, 0, 0, 0});
      continue;
    }
    stamp.addAll(std::initializer_list<uint64_t>{uint64_t(st.st_dev), uint64_t(st.st_ino),
                                                 uint64_t(st.st_size), uint64_t(st.st_ctim.tv_sec),
                                                 uint64_t(st.st_ctim.tv_nsec)});
  }
  return stamp.releaseAsArray();
}

kj::Maybe<const ExecutorService::Accounts::Account&> ExecutorService::Accounts::find(
    uint32_t uid, kj::TimePoint now) {
  auto current = accountFilesStamp();
  if (current != stamp || entries.size() >= MAX_ENTRIES) {
    entries.clear();
    stamp = kj::mv(current);
  }
  KJ_IF_MAYBE (entry, entries.find(uid)) {
    if (now - entry->read < MAX_AGE) return entry->account;
    entries.erase(uid);
  }
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[16384];
  getpwuid_r(uid, &pw, buffer, sizeof(buffer), &found);
  kj::Maybe<Account> account;
  if (found != nullptr) {
    int count = 64;
    kj::Array<gid_t> member;
    for (;;) {
      member = kj::heapArray<gid_t>(count);
      int n = count;
      if (getgrouplist(found->pw_name, found->pw_gid, member.begin(), &n) >= 0) {
        member = kj::heapArray(member.slice(0, n));
        break;
      }
      KJ_REQUIRE(n > count, kj::str("cannot read the groups of uid ", uid));
      count = n;
    }
    account = Account{found->pw_gid, KJ_MAP(m, member){return uint32_t(m);
  }
};
}  // namespace runner::executor_rpc
return entries.insert(uid, Entry{kj::mv(account), now}).value.account;
}

kj::Exception oneLine(kj::Exception::Type type, kj::String line) {
  return kj::Exception(type, __FILE__, __LINE__, kj::mv(line));
}

kj::String describeEnd(const executors::ExitStatus& status) {
  if (status.lost.size() > 0) return kj::str("lost");
  return status.signaled ? kj::str("signal=", status.termSignal)
                         : kj::str("exit=", status.exitCode);
}

struct ExecutorService::Refusal {
  kj::Exception::Type type;
  kj::String reason;
  // What runnerd's client is told it is, for a refusal that is not runnerd's mistake.
  kj::Maybe<ErrorKind> kind = nullptr;
};

namespace {

// "launch refused: REASON", as runnerd passes it on to its client: with the refusal's kind first,
// when it has one (runner/user-error.h).
kj::Exception refusedLaunch(kj::Exception::Type type, kj::Maybe<ErrorKind> kind,
                            kj::StringPtr reason) {
  auto line = kj::str("launch refused: ", reason);
  KJ_IF_MAYBE (k, kind) {
    return userError(*k, type, line);
  }
  return oneLine(type, kj::mv(line));
}

// Between the event loop and the launcher thread that writes a launch's record: whichever moves
// it out of PENDING first decides. The thread moves it to WRITTEN (the launch goes on) or FAILED;
// the event loop to ABANDONED when it gives the launch up (at the disk deadline, or the launch was
// cancelled), and then the thread creates nothing and removes what it wrote itself, after writing
// it. Otherwise the record is removed by the records' thread, after the write.
struct RecordWrite : public kj::AtomicRefcounted {
  enum State : int { PENDING, WRITTEN, FAILED, ABANDONED };
  mutable int state = PENDING;
  // The thread has begun (the launch is not still waiting for a launcher thread).
  mutable bool started = false;

  // Moves from PENDING to `to`; false when the other side has moved it already.
  bool claim(State to) const {
    int expected = PENDING;
    return __atomic_compare_exchange_n(&state, &expected, to, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
  }
  State now() const { return static_cast<State>(__atomic_load_n(&state, __ATOMIC_SEQ_CST)); }
};

// Lives as long as a launch's step on the launcher thread may still run (see busyWith()).
// Made and destroyed on the event loop (the step's function is, whichever thread runs it).
struct LaunchHookGuard {
  kj::Own<LaunchStepCount> hooks;
  explicit LaunchHookGuard(LaunchStepCount& hooks) : hooks(kj::addRef(hooks)) {
    ++this->hooks->count;
  }
  ~LaunchHookGuard() { --hooks->count; }
  KJ_DISALLOW_COPY(LaunchHookGuard);
};

executors::Credentials copyCredentials(const executors::Credentials& credentials) {
  executors::Credentials copy;
  copy.uid = credentials.uid;
  copy.gid = credentials.gid;
  copy.supplementaryGroups = kj::heapArray(credentials.supplementaryGroups.asPtr());
  copy.userName = kj::str(credentials.userName);
  copy.homeDir = kj::str(credentials.homeDir);
  return copy;
}

}  // namespace

// What one launch has made so far. Destroyed when the launch is done, failed or cancelled: a job
// not handed to the service by then is killed (its Process goes) and its record removed.
struct ExecutorService::Launch {
  ExecutorService& service;
  kj::String jobId;
  wire::OutputFile::Client output;
  int outputFd = -1;
  HeldRecord record;
  bool recorded = false;
  kj::Own<RecordWrite> written;
  kj::Maybe<kj::Own<executors::Process>> process;

  Launch(ExecutorService& service, kj::StringPtr jobId, wire::OutputFile::Client output)
      : service(service), jobId(kj::str(jobId)), output(kj::mv(output)) {
    service.launching.insert(kj::str(jobId));
  }
  ~Launch() noexcept(false) {
    process = nullptr;
    if (recorded) {
      // Given up before the launcher thread was done with the record (or before it began): the
      // thread removes what it writes. Otherwise the write is over, and the removal follows it.
      bool threadRemoves = written.get() != nullptr && (written->claim(RecordWrite::ABANDONED) ||
                                                        written->now() == RecordWrite::ABANDONED);
      if (!threadRemoves) service.tasks.add(service.records.remove(jobId));
    }
    service.launching.eraseMatch(jobId);
  }
  KJ_DISALLOW_COPY(Launch);
};

class ExecutorService::JobServer final : public wire::Job::Server {
 public:
  JobServer(ExecutorService& service, kj::StringPtr executor, kj::StringPtr jobId)
      : service(service), executor(kj::str(executor)), jobId(kj::str(jobId)) {}

 protected:
  kj::Promise<void> signal(SignalContext context) override {
    int number = context.getParams().getSignal();
    if (number <= 0 || number >= NSIG) {
      auto line = kj::str("signal refused id=", jobId, ": ", number, " is not a signal");
      service.log(line);
      return oneLine(kj::Exception::Type::FAILED,
                     kj::str("signal refused: ", number, " is not a signal"));
    }
    auto& job = held();
    if (job.running()) KJ_ASSERT_NONNULL(job.process)->signalAll(number);
    return kj::READY_NOW;
  }

  kj::Promise<void> wait(WaitContext context) override {
    context.allowCancellation();
    return held().ended.addBranch().then([this, context]() mutable {
      fillExitStatus(context.getResults().initEnd(), KJ_ASSERT_NONNULL(held().end));
    });
  }

  kj::Promise<void> usage(UsageContext context) override {
    auto& job = held();
    KJ_IF_MAYBE (end, job.end) {
      fillUsage(context.getResults().initUsage(), end->usage);
      return kj::READY_NOW;
    }
    if (!job.running()) return kj::READY_NOW;
    return KJ_ASSERT_NONNULL(job.process)
        ->usageSoFar()
        .then([context](executors::Usage usage) mutable {
          fillUsage(context.getResults().initUsage(), usage);
        });
  }

  kj::Promise<void> acknowledge(AcknowledgeContext context) override {
    auto& job = held();
    KJ_REQUIRE(job.end != nullptr, "the job is still running; only an ended job is acknowledged");
    service.log(kj::str("job acknowledged id=", jobId));
    // Answered once the record is gone too: an acknowledged job never comes back.
    return service.forget(jobId);
  }

 private:
  ExecutorService& service;
  kj::String executor;
  kj::String jobId;

  Held& held() {
    KJ_IF_MAYBE (job, service.find(jobId, executor)) {
      return *job;
    }
    KJ_FAIL_REQUIRE("the executor no longer holds this job (it was acknowledged or discarded)",
                    jobId);
  }
};

// The output descriptor of a launch arrives attached to this capability's import.
class ExecutorService::ExecutorServer final : public wire::Executor::Server {
 public:
  ExecutorServer(ExecutorService& service, executors::Executor& executor)
      : service(service), executor(executor) {}

 protected:
  kj::Promise<void> launch(LaunchContext context) override {
    context.allowCancellation();
    auto params = context.getParams().getRequest();
    auto jobId = kj::str(params.getJobId());
    // Checked here, before the executor sees it: refusals are logged with the reason.
    KJ_IF_MAYBE (refusal, service.refuse(params, jobId, executor.name())) {
      service.log(kj::str("launch refused id=", jobId.slice(0, kj::min(jobId.size(), MAX_JOB_ID)),
                          ": ", refusal->reason));
      return refusedLaunch(refusal->type, refusal->kind, refusal->reason);
    }

    auto state = kj::heap<Launch>(service, jobId, params.getOutput());
    auto& launch = *state;
    return launch.output.getFd()
        .then([this, context, &launch](kj::Maybe<int> fd) mutable {
          KJ_IF_MAYBE (f, fd) {
            launch.outputFd = *f;
          } else {
            KJ_FAIL_REQUIRE("the launch request carried no output descriptor");
          }
          launch.record.jobId = kj::str(launch.jobId);
          launch.record.executor = kj::str(executor.name());
          launch.record.bootId = kj::str(service.bootId);
          // The descriptor stays open with `launch.output` until the launch has returned, which
          // is as long as the executor needs it.
          auto request = toLaunchRequest(context.getParams().getRequest(), launch.outputFd);
          // Nothing runs that no record names: the record goes first, after the job's home, on
          // the thread that then creates the job's process (no hand-off to the records' thread
          // and back on the way of every start).
          auto written = kj::atomicRefcounted<RecordWrite>();
          request.beforeStart = [records = &service.records,
                                 preparation = service.policy.preparation,
                                 credentials = copyCredentials(request.credentials),
                                 record = launch.record.clone(),
                                 written = kj::atomicAddRef(*written),
                                 guard = kj::heap<LaunchHookGuard>(*service.launchHooks)]() {
            __atomic_store_n(&written->started, true, __ATOMIC_SEQ_CST);
            auto removeQuietly = [&]() {
              KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                                  [&]() { records->removeHere(record.jobId); })) {
                KJ_LOG(ERROR, "cannot remove the record of a launch given up", *e);
              }
            };
            KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                           KJ_IF_MAYBE (p, preparation) {
                             p->prepare(credentials);
                           }
                           records->writeHere(record);
                         })) {
              if (!written->claim(RecordWrite::FAILED)) removeQuietly();
              // One line, from the supervisor: the home refused, the record not written. A job
              // that cannot be recorded is not started: the disk is full or failing.
              kj::throwFatalException(refusedLaunch(e->getType(), ErrorKind::UNAVAILABLE,
                                                    withoutErrorKind(e->getDescription())));
            }
            if (!written->claim(RecordWrite::WRITTEN)) {
              // Given up while the disk held the write: nothing is created, the record goes.
              removeQuietly();
              kj::throwFatalException(refusedLaunch(
                  kj::Exception::Type::FAILED, ErrorKind::UNAVAILABLE,
                  "the launch was given up while its record was being written"));
            }
          };
          launch.recorded = true;
          auto& state = *written;
          launch.written = kj::mv(written);
          return executor.launch(kj::mv(request))
              .exclusiveJoin(
                  service.timer.afterDelay(DISK_DEADLINE)
                      .then([&state]() -> kj::Promise<executors::LaunchResult> {
                        // Written (or failed) in time: the launch answers for itself.
                        if (!state.claim(RecordWrite::ABANDONED)) return kj::NEVER_DONE;
                        if (!__atomic_load_n(&state.started, __ATOMIC_SEQ_CST)) {
                          return refusedLaunch(kj::Exception::Type::OVERLOADED,
                                               ErrorKind::UNAVAILABLE,
                                               kj::str("the supervisor could not begin the launch "
                                                       "within ", DISK_DEADLINE,
                                                       ": its launcher threads are held (by "
                                                       "starting jobs, or by a disk that does "
                                                       "not answer)"));
                        }
                        return refusedLaunch(kj::Exception::Type::FAILED, ErrorKind::UNAVAILABLE,
                                             "the supervisor's state directory is not answering");
                      }));
        })
        .then([this, context,
               &launch](executors::LaunchResult&& result) mutable -> kj::Promise<void> {
          KJ_SWITCH_ONEOF(result) {
            KJ_CASE_ONEOF(process, kj::Own<executors::Process>) {
              if (service.stopping) {
                return refusedLaunch(kj::Exception::Type::FAILED, ErrorKind::UNAVAILABLE,
                                     "the supervisor is shutting down");
              }
              launch.record.state = HeldRecord::State::RUNNING;
              launch.record.trace = process->trace();
              // Answered now; the record that says where the job's processes are follows on
              // the records thread, before anything later of this job's (its end), and before
              // an exec (quiesce() waits for the thread). A supervisor that dies meanwhile finds
              // the launch's record, kills what is left of it by the job's id and reports it lost,
              // as it would have with this record: no runnerd waits on this write for a start,
              // and the event loop hears of it only if it fails.
              service.records.post(launch.record);
              auto job = kj::heap<Held>();
              job->id = kj::str(launch.jobId);
              job->executor = kj::str(executor.name());
              job->trace = launch.record.trace.clone();
              job->process = kj::mv(process);
              // The service's now, record and all.
              launch.recorded = false;
              auto& held = service.hold(kj::mv(job));
              auto started = context.getResults().initResult().initStarted();
              held.fillStarted(started.initInfo());
              started.setJob(kj::heap<JobServer>(service, executor.name(), held.id));
              service.log(kj::str("job started id=", held.id, " executor=", held.executor,
                                  " pid=", held.trace.pid));
              return kj::READY_NOW;
            }
            KJ_CASE_ONEOF(failure, executors::LaunchFailure) {
              service.log(kj::str("job failed to start id=", launch.jobId, ": ", failure.message));
              auto failed = context.getResults().initResult().initFailed();
              failed.setErrorNumber(failure.errorNumber);
              failed.setMessage(failure.message);
              return kj::READY_NOW;
            }
          }
          KJ_UNREACHABLE;
        })
        .catch_([this, &launch](kj::Exception&& e) -> kj::Promise<void> {
          kj::StringPtr reason = withoutErrorKind(e.getDescription());
          if (reason.startsWith("launch refused: "))
            reason = reason.slice(strlen("launch refused: "));
          service.log(kj::str("launch refused id=", launch.jobId, ": ", reason));
          return kj::mv(e);
        })
        .attach(kj::mv(state));
  }

  kj::Promise<void> list(ListContext context) override {
    kj::Vector<Held*> mine;
    for (auto& entry : service.held) {
      if (entry.value->executor == executor.name()) mine.add(entry.value.get());
    }
    auto jobs = context.getResults().initJobs(mine.size());
    for (auto i : kj::indices(mine)) {
      auto& job = *mine[i];
      jobs[i].setJobId(job.id);
      job.fillStarted(jobs[i].initStarted());
      KJ_IF_MAYBE (end, job.end) {
        jobs[i].setEnded(true);
        fillExitStatus(jobs[i].initEnd(), *end);
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> adopt(AdoptContext context) override {
    auto jobId = context.getParams().getJobId();
    KJ_IF_MAYBE (job, service.find(jobId, executor.name())) {
      auto results = context.getResults();
      results.setJob(kj::heap<JobServer>(service, executor.name(), job->id));
      job->fillStarted(results.initStarted());
      return kj::READY_NOW;
    }
    KJ_FAIL_REQUIRE("no such job", jobId);
  }

  kj::Promise<void> discard(DiscardContext context) override {
    context.allowCancellation();
    auto jobId = kj::str(context.getParams().getJobId());
    KJ_IF_MAYBE (job, service.find(jobId, executor.name())) {
      if (job->running()) KJ_ASSERT_NONNULL(job->process)->signalAll(SIGKILL);
      return job->ended.addBranch().then(
          [&service = service, jobId = kj::mv(jobId)]() -> kj::Promise<void> {
            if (service.held.find(jobId) == nullptr) return kj::READY_NOW;
            service.log(kj::str("job discarded id=", jobId));
            return service.forget(jobId);
          });
    }
    return kj::READY_NOW;
  }

 private:
  ExecutorService& service;
  executors::Executor& executor;
};

class ExecutorService::HostServer final : public wire::ExecutorHost::Server {
 public:
  explicit HostServer(ExecutorService& service) : service(service) {}

 protected:
  kj::Promise<void> executors(ExecutorsContext context) override {
    auto names = service.executors.names();
    auto out = context.getResults().initNames(names.size());
    for (auto i : kj::indices(names)) out.set(i, names[i]);
    return kj::READY_NOW;
  }

  kj::Promise<void> executor(ExecutorContext context) override {
    auto name = context.getParams().getName();
    KJ_IF_MAYBE (found, service.executors.find(name)) {
      context.getResults().setExecutor(kj::heap<ExecutorServer>(service, *found));
      return kj::READY_NOW;
    }
    auto reason = kj::str("unknown executor '", printable(name),
                          "' (known: ", kj::strArray(service.executors.names(), ", "), ")");
    service.log(kj::str("executor refused: ", reason));
    return oneLine(kj::Exception::Type::FAILED, kj::mv(reason));
  }

 private:
  ExecutorService& service;
};

ExecutorService::ExecutorService(executors::ExecutorSet& executors, HeldRecords& records,
                                 kj::Timer& timer, LaunchPolicy policy,
                                 kj::Function<void(kj::StringPtr)> log)
    : executors(executors),
      records(records),
      timer(timer),
      policy(kj::mv(policy)),
      log(kj::mv(log)),
      bootId(currentBootId()),
      taskErrors(*this),
      tasks(taskErrors) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  hurried = kj::mv(paf.fulfiller);
  hurriedPromise = kj::mv(paf.promise);
  tasks.add(logRecordFailures());
}

kj::Promise<void> ExecutorService::logRecordFailures() {
  return records.failed().then([this]() {
    for (auto& line : records.takeFailures()) {
      log(kj::str("held job records in ", records.path(), ": ", line));
    }
    return logRecordFailures();
  });
}

ExecutorService::~ExecutorService() noexcept(false) {
  size_t running = 0;
  for (auto& entry : held) running += entry.value->running();
  if (running > 0) log(kj::str("killing the ", running, " jobs still running"));
}

void ExecutorService::TaskErrors::taskFailed(kj::Exception&& exception) {
  service.log(
      kj::str("held job records in ", service.records.path(), ": ", exception.getDescription()));
}

wire::ExecutorHost::Client ExecutorService::newHost() {
  return kj::heap<HostServer>(*this);
}

kj::Maybe<ExecutorService::Refusal> ExecutorService::refuse(wire::LaunchRequest::Reader request,
                                                            kj::StringPtr jobId,
                                                            kj::StringPtr executor) {
  using Type = kj::Exception::Type;
  auto credentials = request.getCredentials();
  uint32_t uid = credentials.getUid();
  uint32_t gid = credentials.getGid();
  if (!isPlainName(jobId)) {
    return Refusal{Type::FAILED,
                   kj::str("a job id is 1 to ", MAX_JOB_ID, " letters, digits, '-' or '_'")};
  }
  if (stopping) {
    return Refusal{Type::FAILED, kj::str("the supervisor is shutting down"),
                   ErrorKind::UNAVAILABLE};
  }
  if (quiescing) {
    return Refusal{Type::FAILED,
                   kj::str("the supervisor is restarting itself; try again in a moment"),
                   ErrorKind::UNAVAILABLE};
  }
  if (uid == 0 || gid == 0) {
    return Refusal{Type::FAILED,
                   kj::str("a job may not run as root (uid ", uid, ", gid ", gid, ")")};
  }
  for (auto group : credentials.getSupplementaryGroups()) {
    if (group == 0) {
      return Refusal{Type::FAILED,
                     kj::str("a job may not run with group root (gid 0) among its groups")};
    }
  }
  if (uid < policy.firstUid || uid > policy.lastUid) {
    return Refusal{Type::FAILED,
                   kj::str("uid ", uid, " is outside the uids this supervisor grants (",
                           policy.firstUid, "-", policy.lastUid, ")")};
  }
  kj::Maybe<const Accounts::Account&> account;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { account = accounts.find(uid, timer.now()); })) {
    return Refusal{Type::FAILED, kj::str(e->getDescription())};
  }
  kj::Maybe<uint32_t> primaryGid;
  kj::ArrayPtr<const uint32_t> memberOf;
  KJ_IF_MAYBE (a, account) {
    primaryGid = a->gid;
    memberOf = a->groups;
  }
  KJ_IF_MAYBE (reason, refuseGroups(uid, gid, credentials.getSupplementaryGroups(), primaryGid,
                                    memberOf, policy.firstUid, policy.lastUid)) {
    return Refusal{Type::FAILED, kj::mv(*reason)};
  }
  if (held.find(jobId) != nullptr || launching.contains(jobId)) {
    return Refusal{Type::FAILED, kj::str("a job with this id is already held")};
  }
  if (held.size() + launching.size() >= policy.maxHeldJobs) {
    return Refusal{Type::OVERLOADED,
                   kj::str("the supervisor holds ", held.size(),
                           " jobs, as many as it may, until their ends are acknowledged"),
                   ErrorKind::LIMIT};
  }
  return nullptr;
}

kj::Promise<void> ExecutorService::withinDiskDeadline(kj::Promise<void> promise) {
  return promise.exclusiveJoin(timer.afterDelay(DISK_DEADLINE).then([]() -> kj::Promise<void> {
    return userError(ErrorKind::UNAVAILABLE, "the supervisor's state directory is not answering");
  }));
}

ExecutorService::Held& ExecutorService::hold(kj::Own<Held> job) {
  auto& ref = *job;
  held.insert(ref.id, kj::mv(job));
  if (ref.end == nullptr) watch(ref);
  return ref;
}

// The end is known to waiters at once; its record is written meanwhile, and synced unless
// runnerd acknowledges the end (after its own synced write) within END_SYNC_DELAY: forgetting the
// job drops the pending sync.
void ExecutorService::watch(Held& job) {
  auto& process = *KJ_ASSERT_NONNULL(job.process);
  job.ended = process.onExit()
                  .then([this, &job](executors::ExitStatus status) {
                    log(kj::str("job ended id=", job.id, " ", describeEnd(status)));
                    job.end = kj::mv(status);
                    records.post(recordOf(job));
                    job.endSync = timer.afterDelay(END_SYNC_DELAY)
                                      .then([this, &job]() { return records.sync(job.id); })
                                      .eagerlyEvaluate([this, id = kj::str(job.id)](
                                                           kj::Exception&& e) {
                                        log(kj::str("cannot sync the end record of job id=", id,
                                                    ": ", e.getDescription()));
                                      });
                  })
                  .fork();
}

HeldRecord ExecutorService::recordOf(const Held& job) const {
  HeldRecord record;
  record.jobId = kj::str(job.id);
  record.executor = kj::str(job.executor);
  record.bootId = kj::str(bootId);
  record.trace = job.trace.clone();
  KJ_IF_MAYBE (end, job.end) {
    record.state = HeldRecord::State::ENDED;
    record.end = *end;
  } else {
    record.state = HeldRecord::State::RUNNING;
  }
  return record;
}

kj::Maybe<ExecutorService::Held&> ExecutorService::find(kj::StringPtr jobId,
                                                        kj::StringPtr executor) {
  KJ_IF_MAYBE (job, held.find(jobId)) {
    if ((*job)->executor == executor) return **job;
  }
  return nullptr;
}

kj::Promise<void> ExecutorService::forget(kj::StringPtr jobId) {
  // After the job's end record, if that is still queued: the thread keeps the order.
  auto removed = records.remove(jobId).catch_([this](kj::Exception&& e) -> kj::Promise<void> {
    log(kj::str("held job records in ", records.path(), ": ", e.getDescription()));
    return kj::mv(e);
  });
  // The key points into the Held: erase it through the map, which destroys the Held last.
  held.erase(jobId);
  return withinDiskDeadline(kj::mv(removed));
}

}  // namespace runner::executor_rpc

#include "runner/rpc-service.h"

#include <capnp/schema.h>
#include <kj/debug.h>
#include <signal.h>

#include "runner/follower.h"
#include "runner/printable.h"
#include "runner/rpc-convert.h"
#include "runner/user-error.h"

namespace runner {

namespace {

// "Job.stop": the method a call to `Interface` asked for, for the log.
template <typename Interface>
kj::String methodName(uint64_t interfaceId, uint16_t methodId) {
  auto schema = capnp::Schema::from<Interface>();
  if (interfaceId != schema.getProto().getId()) {
    return kj::str("method @", methodId, " of interface ", kj::hex(interfaceId));
  }
  auto methods = schema.getMethods();
  if (methodId >= methods.size()) return kj::str(schema.getShortDisplayName(), ".@", methodId);
  return kj::str(schema.getShortDisplayName(), ".", methods[methodId].getProto().getName());
}

// Whether a line about a failed call of `caller`'s may be logged now (see
// CALL_FAILURES_LOGGED_PER_WINDOW): a client repeating a refused or failing call cannot fill the
// log.
bool mayLogCallFailure(EventLog& log, Caller& caller) {
  auto& usage = *caller.usage;
  auto now = kj::systemCoarseMonotonicClock().now();
  if (now >= usage.callFailureWindowEnd) {
    if (usage.callFailuresNotLogged > 0) {
      log(usage.callFailuresNotLogged, " more refused or failed calls of user ", caller.user,
          " were not logged one by one (at most ", CALL_FAILURES_LOGGED_PER_WINDOW, " per ",
          CALL_FAILURE_LOG_WINDOW, ")");
      usage.callFailuresNotLogged = 0;
    }
    usage.callFailureWindowEnd = now + CALL_FAILURE_LOG_WINDOW;
    usage.callFailuresLogged = 0;
  }
  if (usage.callFailuresLogged < CALL_FAILURES_LOGGED_PER_WINDOW) {
    ++usage.callFailuresLogged;
    return true;
  }
  ++usage.callFailuresNotLogged;
  return false;
}

// Runs one call of a method of `Interface` (dispatch(): the generated dispatchCall) so that
// whatever it throws or rejects with reaches the client with a kind (runner/user-error.h): an
// exception without one is a bug's, logged here in full and answered as "internal: ...". Costs
// the client's calls one promise node each.
template <typename Interface, typename Dispatch>
capnp::Capability::Server::DispatchCallResult answerWithErrorKinds(EventLog& log, Caller& caller,
                                                                   uint64_t interfaceId,
                                                                   uint16_t methodId,
                                                                   Dispatch&& dispatch) {
  bool streaming = false;
  auto call = kj::evalNow([&]() {
    auto result = dispatch();
    streaming = result.isStreaming;
    return kj::mv(result.promise);
  });
  auto answered = call.catch_([&log, caller = kj::addRef(caller), interfaceId,
                               methodId](kj::Exception&& e) mutable -> kj::Promise<void> {
    if (errorKindOf(e.getDescription()) == nullptr && mayLogCallFailure(log, *caller)) {
      log("internal error in ", methodName<Interface>(interfaceId, methodId), " for ", caller->user,
          " peer=", caller->peer, ": ", e.getFile(), ":", e.getLine(), ": ", e.getDescription());
    }
    return withErrorKind(kj::mv(e));
  });
  return {kj::mv(answered), streaming};
}

// A follower's sink that is the client's OutputSink capability. write() is declared a
// streaming call, but capnp 0.9.2 sizes a stream's window by the socket's send buffer for each
// sink; this sink sends plain calls and counts their returns (the wire format is the same),
// holding each watch to its window (see WATCH_INITIAL_OUTPUT_WINDOW) and the connection to
// CONNECTION_OUTPUT_WINDOW. The
// first failed write fails every later one, as a stream does.
class RpcOutputSink final : public OutputSink, private kj::TaskSet::ErrorHandler {
 public:
  RpcOutputSink(api::OutputSink::Client client, Caller& caller)
      : client(kj::mv(client)), caller(caller), acks(*this) {}

  ~RpcOutputSink() noexcept(false) {
    // The returns still on the way are no longer awaited.
    caller.output.release(inFlight);
  }

  kj::ArrayPtr<kj::byte> nextBuffer(size_t size) override {
    KJ_IF_MAYBE (request, next) {
      // Left over from a write that was copied into a smaller message.
      auto data = request->getAs<api::OutputSink::WriteParams>().getData();
      if (data.size() == size) return data;
    }
    auto request = newWriteRequest(size);
    kj::ArrayPtr<kj::byte> buffer = request.getAs<api::OutputSink::WriteParams>().getData();
    next = kj::mv(request);
    return buffer;
  }

  kj::Promise<void> write(size_t size) override {
    KJ_IF_MAYBE(e, failure) {
      return kj::cp(*e);
    }
    auto& filled = KJ_ASSERT_NONNULL(next, "write() without nextBuffer()");
    auto data = filled.getAs<api::OutputSink::WriteParams>().getData();
    KJ_ASSERT(size <= data.size(), size);
    capnp::Request<capnp::AnyPointer, capnp::AnyPointer> request = nullptr;
    // What the message holds until the client acknowledges it: its data's allocation, and the
    // RPC system's bookkeeping of the call.
    size_t held;
    if (size * 4 < data.size()) {
      // A small write (a job that prints a line now and then): the message would keep the whole
      // chunk's memory until the client acknowledges it, so the bytes go in a message of their
      // own size and the chunk stays for the next read.
      request = newWriteRequest(size);
      memcpy(request.getAs<api::OutputSink::WriteParams>().getData().begin(), data.begin(), size);
      held = size + WRITE_OVERHEAD;
    } else {
      held = data.size() + WRITE_OVERHEAD;
      request = kj::mv(filled);
      next = nullptr;
      if (size < data.size()) {
        // The data field is the last object of the message: shrinking it gives the space back
        // to the message, so only `size` bytes go on the wire.
        auto params = request.getAs<api::OutputSink::WriteParams>();
        auto orphan = params.disownData();
        orphan.truncate(size);
        params.adoptData(kj::mv(orphan));
      }
    }
    inFlight += held;
    caller.output.add(held);
    acks.add(request.send().then(
        [this, held](capnp::Response<capnp::AnyPointer>&&) { acknowledged(held); },
        [this, held](kj::Exception&& e) {
          if (failure == nullptr) failure = kj::mv(e);
          acknowledged(held);
        }));
    return whenRoom();
  }

  kj::Promise<void> end(const Job& job) override {
    return caller
        .reply([this, &job]() {
          auto request = client.endRequest();
          auto info = request.initInfo();
          fillJobInfo(info, job);
          size_t bytes = info.asReader().totalSize().wordCount * sizeof(capnp::word);
          ending = request.send().ignoreResult();
          return bytes;
        })
        .then([this]() { return kj::mv(KJ_ASSERT_NONNULL(ending)); });
  }

  // Drops the reference to the client's sink: the client learns that no more output comes.
  void release() {
    next = nullptr;
    client = nullptr;
  }

 private:
  // OutputSink.write's ordinal in schema/runner.capnp.
  static constexpr uint16_t WRITE_METHOD = 0;
  // Memory a write call holds beyond its data until it returns: the message's header and
  // pointers, the question, the promises waiting for the return (measured well below this).
  static constexpr size_t WRITE_OVERHEAD = 1024;

  capnp::Request<capnp::AnyPointer, capnp::AnyPointer> newWriteRequest(size_t size) {
    auto request = client.typelessRequest(capnp::typeId<api::OutputSink>(), WRITE_METHOD,
                                          capnp::MessageSize{size / sizeof(capnp::word) + 8, 0});
    request.initAs<api::OutputSink::WriteParams>().initData(size);
    return request;
  }

  api::OutputSink::Client client;
  Caller& caller;
  // The request whose data field the follower is reading into.
  kj::Maybe<capnp::Request<capnp::AnyPointer, capnp::AnyPointer>> next;
  size_t inFlight = 0;
  kj::Maybe<kj::Promise<void>> ending;
  size_t window = WATCH_INITIAL_OUTPUT_WINDOW;
  // Acknowledged since the window last grew.
  size_t acknowledgedInWindow = 0;
  kj::Maybe<kj::Exception> failure;
  kj::TaskSet acks;

  void acknowledged(size_t size) {
    inFlight -= size;
    acknowledgedInWindow += size;
    if (acknowledgedInWindow >= window && window < WATCH_MAX_OUTPUT_WINDOW) {
      window *= 2;
      acknowledgedInWindow = 0;
    }
    caller.output.release(size);
  }

  kj::Promise<void> whenRoom() {
    KJ_IF_MAYBE(e, failure) {
      return kj::cp(*e);
    }
    if (inFlight < window && caller.output.hasRoom()) return kj::READY_NOW;
    return caller.output.nextRelease().then([this]() { return whenRoom(); });
  }

  void taskFailed(kj::Exception&& exception) override {
    // Each acknowledgement handles its own failure.
  }
};

class SubscriptionImpl final : public api::Subscription::Server {
 public:
  SubscriptionImpl(EventLog& log, Job& job, api::OutputSink::Client client, uint64_t offset,
                   bool follow, kj::Own<Caller> caller)
      : job(job),
        caller(kj::mv(caller)),
        sink(kj::mv(client), *this->caller),
        // A removed job's watch ends with its removal (the error goes to the log).
        task(followOutput(job, sink, offset, follow)
                 .exclusiveJoin(job.whenRemoved())
                 .eagerlyEvaluate([this, &log, &job](kj::Exception&& e) {
                   // A client that went away needs no word; anything else is the server's
                   // problem and is logged.
                   if (e.getType() != kj::Exception::Type::DISCONNECTED) {
                     log("output watch of job ", job.id(), " for ", this->caller->user,
                         " failed: ", e.getDescription());
                   }
                   // Letting go of the client's sink tells it no more output will come.
                   sink.release();
                 })) {
    ++this->caller->activeWatches;
    ++this->caller->usage->watches;
    job.hold();
  }

  ~SubscriptionImpl() noexcept(false) {
    // The follower goes first: it reads the job.
    task = nullptr;
    job.release();
    --caller->activeWatches;
    --caller->usage->watches;
  }

 private:
  Job& job;
  kj::Own<Caller> caller;
  RpcOutputSink sink;
  kj::Promise<void> task;
};

class JobImpl final : public api::Job::Server {
 public:
  JobImpl(JobTable& table, EventLog& log, Job& job, kj::Own<Caller> caller)
      : table(table),
        log(log),
        job(job),
        caller(kj::mv(caller)),
        mayControl(this->caller->admin || this->caller->user == job.record().owner) {
    ++this->caller->jobCapabilities;
    job.hold();
  }
  ~JobImpl() noexcept(false) {
    --caller->jobCapabilities;
    job.release();
  }

  DispatchCallResult dispatchCall(
      uint64_t interfaceId, uint16_t methodId,
      capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    return answerWithErrorKinds<api::Job>(log, *caller, interfaceId, methodId, [&]() {
      return api::Job::Server::dispatchCall(interfaceId, methodId, context);
    });
  }

  kj::Promise<void> info(InfoContext context) override {
    requireNotRemoved();
    ++caller->activity;
    if (job.hasEnded()) {
      return caller->track(
          caller->reply([this, context]() mutable { return answerInfo(context); }));
    }
    // A running job's usage so far comes from its executor (a call to the supervisor).
    return caller->track(job.usageSoFar().then([this, context](executors::Usage live) mutable {
      return caller->reply([this, context, live]() mutable {
        if (job.isRemoved()) kj::throwFatalException(job.removedError());
        auto info = context.getResults().initInfo();
        fillJobInfo(info, job, live);
        return info.asReader().totalSize().wordCount * sizeof(capnp::word);
      });
    }));
  }

  kj::Promise<void> wait(WaitContext context) override {
    requireNotRemoved();
    context.allowCancellation();
    return caller->track(job.whenEnded().then([this, context]() mutable {
      return caller->reply([this, context]() mutable { return answerInfo(context); });
    }));
  }

  kj::Promise<void> stop(StopContext context) override {
    requireNotRemoved();
    requireControl("stop");
    context.allowCancellation();
    auto graceMillis = context.getParams().getGraceMillis();
    kj::Maybe<kj::Duration> grace;
    if (graceMillis > 0) grace = graceMillis * kj::MILLISECONDS;
    log("stop requested id=", job.id(), " by=", caller->user, " peer=", caller->peer);
    return caller->track(job.stop(grace).then([this, context]() mutable {
      return caller->reply([this, context]() mutable { return answerInfo(context); });
    }));
  }

  kj::Promise<void> signal(SignalContext context) override {
    requireNotRemoved();
    requireControl("signal");
    ++caller->activity;
    int number = context.getParams().getSignal();
    if (number < 1 || number > SIGRTMAX) {
      throwUserError(ErrorKind::INVALID,
                     kj::str(number, " is not a signal; a signal is a number from 1 to ", SIGRTMAX,
                             " (or a name such as TERM, KILL or USR1)"));
    }
    log("signal requested id=", job.id(), " signal=", number, " by=", caller->user,
        " peer=", caller->peer);
    if (!job.signal(number)) {
      throwUserError(ErrorKind::CONFLICT, kj::str("job ", job.id(), " has ended"));
    }
    return caller->track(caller->reply([this, context]() mutable { return answerInfo(context); }));
  }

  kj::Promise<void> outputTimes(OutputTimesContext context) override {
    requireNotRemoved();
    requireControl("read the output times of");
    ++caller->activity;
    return caller->track(caller->reply([this, context]() mutable {
      if (job.isRemoved()) kj::throwFatalException(job.removedError());
      auto samples = job.outputTimes();
      auto list = context.getResults().initSamples(samples.size());
      for (size_t i = 0; i < samples.size(); i++) {
        list[i].setOffset(samples[i].offset);
        list[i].setTimeMillis(samples[i].timeMillis);
      }
      return list.asReader().totalSize().wordCount * sizeof(capnp::word);
    }));
  }

  kj::Promise<void> watchOutput(WatchOutputContext context) override {
    requireNotRemoved();
    requireControl("read the output of");
    ++caller->activity;
    if (caller->activeWatches >= caller->limits.watchesPerConnection) {
      throwUserError(ErrorKind::LIMIT, kj::str("too many output watches on this connection (limit ",
                                               caller->limits.watchesPerConnection, ")"));
    }
    caller->limits.requireDescriptors(1);
    if (caller->usage->watches >= caller->limits.watchesPerUser) {
      throwUserError(ErrorKind::LIMIT, kj::str("too many output watches for user ", caller->user,
                                               " (limit ", caller->limits.watchesPerUser, ")"));
    }
    auto params = context.getParams();
    context.getResults().setHandle(kj::heap<SubscriptionImpl>(
        log, job, params.getSink(), params.getFromOffset(), params.getFollow(),
        kj::addRef(*caller)));
    return kj::READY_NOW;
  }

  kj::Promise<void> remove(RemoveContext context) override {
    requireNotRemoved();
    requireControl("remove");
    context.allowCancellation();
    auto params = context.getParams();
    if (job.hasEnded()) return caller->track(removeNow());
    if (!params.getForce()) {
      throwUserError(ErrorKind::CONFLICT,
                     kj::str("job ", job.id(), " is still running (use --force to stop it first)"));
    }
    kj::Maybe<kj::Duration> grace;
    if (params.getGraceMillis() > 0) grace = params.getGraceMillis() * kj::MILLISECONDS;
    log("stop requested id=", job.id(), " by=", caller->user, " peer=", caller->peer,
        " to remove it");
    return caller->track(job.stop(grace).then([this]() { return removeNow(); }));
  }

 private:
  JobTable& table;
  EventLog& log;
  Job& job;
  kj::Own<Caller> caller;
  bool mayControl;

  // Fills the `info` of any of this capability's results; returns its size in bytes.
  template <typename Context>
  size_t answerInfo(Context& context) {
    auto info = context.getResults().initInfo();
    fillJobInfo(info, job);
    return info.asReader().totalSize().wordCount * sizeof(capnp::word);
  }

  // Once the job has ended: another call may have removed it meanwhile.
  kj::Promise<void> removeNow() {
    if (job.isRemoved()) return job.removedError();
    return table.remove(job, kj::str("by ", caller->user)).ignoreResult();
  }

  void requireNotRemoved() {
    if (job.isRemoved()) kj::throwFatalException(job.removedError());
  }

  void requireControl(kj::StringPtr action) {
    if (mayControl) return;
    if (mayLogCallFailure(log, *caller)) {
      log("permission denied: user=", caller->user, " peer=", caller->peer, " tried to ", action,
          " job ", job.id(), " of ", job.record().owner);
    }
    throwUserError(ErrorKind::PERMISSION_DENIED,
                   kj::str("only the owner of job ", job.id(), " or an admin may ", action, " it"));
  }
};

// Entries a list filter's `states` may have (there are 6 states).
constexpr size_t MAX_LIST_STATES = 16;

class JobManagerImpl final : public api::JobManager::Server {
 public:
  JobManagerImpl(JobTable& table, EventLog& log, kj::Own<Caller> caller)
      : table(table), log(log), caller(kj::mv(caller)) {}

  DispatchCallResult dispatchCall(
      uint64_t interfaceId, uint16_t methodId,
      capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    return answerWithErrorKinds<api::JobManager>(log, *caller, interfaceId, methodId, [&]() {
      return api::JobManager::Server::dispatchCall(interfaceId, methodId, context);
    });
  }

  kj::Promise<void> start(StartContext context) override {
    requireRoomForJobCapability();
    caller->limits.requireDescriptors(4);
    // The launch runs on the event loop: other calls are served while this one waits for exec.
    return caller->track(
        table.start(caller->user, toStartRequest(context.getParams().getSpec()))
            .then([this, context](Job* job) mutable {
              // The table's hold for this call goes with it; the capability holds the job.
              return caller
                  ->reply([this, context, job]() mutable {
                    auto results = context.getResults();
                    results.setJob(newJob(*job));
                    auto info = results.initInfo();
                    fillJobInfo(info, *job);
                    return info.asReader().totalSize().wordCount * sizeof(capnp::word);
                  })
                  .attach(kj::defer([job]() { job->release(); }));
            }));
  }

  kj::Promise<void> get(GetContext context) override {
    ++caller->activity;
    requireRoomForJobCapability();
    auto id = context.getParams().getId();
    KJ_IF_MAYBE(job, table.resolve(caller->user, id)) {
      // A small first segment: the RPC system keeps the results until the client finishes the
      // call, and the default one is 8 KiB.
      context.getResults(capnp::MessageSize{4, 1}).setJob(newJob(*job));
      return kj::READY_NOW;
    }
    throwUserError(ErrorKind::NOT_FOUND, kj::str("job ", printable(id)));
  }

  kj::Promise<void> list(ListContext context) override {
    ++caller->activity;
    auto filter = context.getParams().getFilter();
    ListQuery query;
    if (!filter.getAllUsers()) query.owner = caller->user;
    auto states = filter.getStates();
    if (states.size() > MAX_LIST_STATES) {
      throwUserError(ErrorKind::INVALID,
                     kj::str("too many states in the list filter (", states.size(), "; at most ",
                             MAX_LIST_STATES, ")"));
    }
    for (auto state : states) query.states |= 1u << uint(fromApiState(state));
    query.limit = filter.getLimit();
    query.after = filter.getAfter();
    query.name = filter.getName();
    // The filter's text lives in the params, which the context keeps; its labels are copied.
    auto labels = toLabels(filter.getLabels());
    return caller->track(caller->reply([this, context, query, labels = kj::mv(labels)]() mutable {
      query.labels = labels;
      return answerList(context, query);
    }));
  }

  size_t answerList(ListContext& context, const ListQuery& query) {
    auto page = table.list(query);
    auto results = context.getResults();
    auto out = results.initJobs(page.jobs.size());
    for (auto i : kj::indices(page.jobs)) fillJobInfo(out[i], *page.jobs[i]);
    KJ_IF_MAYBE (next, page.next) {
      results.setNext(*next);
    }
    return results.asReader().totalSize().wordCount * sizeof(capnp::word);
  }

  kj::Promise<void> whoami(WhoamiContext context) override {
    ++caller->activity;
    auto results = context.getResults();
    results.setUser(caller->user);
    results.setAdmin(caller->admin);
    return kj::READY_NOW;
  }

  kj::Promise<void> prune(PruneContext context) override {
    ++caller->activity;
    auto params = context.getParams();
    bool allUsers = params.getAllUsers();
    if (allUsers && !caller->admin) {
      if (mayLogCallFailure(log, *caller)) {
        log("permission denied: user=", caller->user, " peer=", caller->peer,
            " tried to prune every user's jobs");
      }
      throwUserError(ErrorKind::PERMISSION_DENIED, "only an admin may prune every user's jobs");
    }
    // Ages beyond a few million years select nothing; they must not wrap around.
    uint64_t olderThan = kj::min(params.getOlderThanMillis(), uint64_t(1) << 62);
    int64_t endedBy = nowMillis() - int64_t(olderThan);
    kj::Maybe<kj::StringPtr> owner;
    if (!allUsers) owner = caller->user;
    log("prune requested by=", caller->user, " peer=", caller->peer, " older-than=", olderThan,
        "ms", allUsers ? " all-users" : "");
    context.allowCancellation();
    return caller->track(table.prune(owner, endedBy).then([context](PruneResult pruned) mutable {
      auto results = context.getResults();
      results.setRemoved(pruned.removed);
      results.setBytes(pruned.bytes);
    }));
  }

 private:
  JobTable& table;
  EventLog& log;
  kj::Own<Caller> caller;

  void requireRoomForJobCapability() {
    if (caller->jobCapabilities < caller->limits.jobCapabilitiesPerConnection) return;
    throwUserError(ErrorKind::LIMIT,
                   kj::str("this connection holds too many job capabilities (limit ",
                           caller->limits.jobCapabilitiesPerConnection, "); release some"));
  }

  api::Job::Client newJob(Job& job) {
    return kj::heap<JobImpl>(table, log, job, kj::addRef(*caller));
  }
};

}  // namespace

void ConnectionLimits::requireDescriptors(uint64_t taking) const {
  if (descriptors == nullptr) return;
  if (!descriptors->nearlyExhausted()) {
    descriptors->taking(taking);
  } else {
    throwUserError(ErrorKind::LIMIT,
                   "runnerd is short of descriptors (too many jobs, watches and connections of "
                   "all users); try again later");
  }
}

void OutputBudget::release(size_t bytes) {
  inFlight -= bytes;
  released.fire();
}

kj::Promise<void> OutputBudget::nextRelease() {
  return released.next();
}

api::JobManager::Client newJobManager(JobTable& table, EventLog& log, kj::Own<Caller> caller) {
  return kj::heap<JobManagerImpl>(table, log, kj::mv(caller));
}

}  // namespace runner

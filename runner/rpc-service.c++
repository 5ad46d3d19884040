#include "runner/rpc-service.h"

#include <kj/debug.h>

#include "runner/follower.h"
#include "runner/rpc-convert.h"

namespace runner {

namespace {

// A follower's sink that is the client's OutputSink capability. write() is a streaming call:
// its promise resolves when the RPC system has room in its window, which is the flow control.
class RpcOutputSink final : public OutputSink {
 public:
  explicit RpcOutputSink(api::OutputSink::Client client) : client(kj::mv(client)) {}

  kj::Promise<void> write(kj::ArrayPtr<const kj::byte> data) override {
    auto request =
        client.writeRequest(capnp::MessageSize{data.size() / sizeof(capnp::word) + 8, 0});
    request.setData(data);
    return request.send();
  }

  kj::Promise<void> end(const Job& job) override {
    auto request = client.endRequest();
    fillJobInfo(request.initInfo(), job);
    return request.send().ignoreResult();
  }

 private:
  api::OutputSink::Client client;
};

class SubscriptionImpl final : public api::Subscription::Server {
 public:
  SubscriptionImpl(Job& job, api::OutputSink::Client client, uint64_t offset, bool follow,
                   kj::Own<Caller> caller)
      : caller(kj::mv(caller)),
        sink(kj::mv(client)),
        task(followOutput(job, sink, offset, follow)
                 .eagerlyEvaluate([](kj::Exception&&) {
                   // The client went away or its sink failed: nothing left to deliver to.
                 })) {
    ++this->caller->activeWatches;
  }

  ~SubscriptionImpl() noexcept(false) { --caller->activeWatches; }

 private:
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
        mayControl(this->caller->admin || this->caller->user == job.record().owner) {}

  kj::Promise<void> info(InfoContext context) override {
    fillJobInfo(context.getResults().initInfo(), job);
    return kj::READY_NOW;
  }

  kj::Promise<void> wait(WaitContext context) override {
    context.allowCancellation();
    return job.whenEnded().then(
        [this, context]() mutable { fillJobInfo(context.getResults().initInfo(), job); });
  }

  kj::Promise<void> stop(StopContext context) override {
    requireControl("stop");
    context.allowCancellation();
    auto graceMillis = context.getParams().getGraceMillis();
    kj::Maybe<kj::Duration> grace;
    if (graceMillis > 0) grace = graceMillis * kj::MILLISECONDS;
    log("stop requested id=", job.id(), " by=", caller->user, " peer=", caller->peer);
    return job.stop(grace).then(
        [this, context]() mutable { fillJobInfo(context.getResults().initInfo(), job); });
  }

  kj::Promise<void> watchOutput(WatchOutputContext context) override {
    requireControl("read the output of");
    if (caller->activeWatches >= MAX_WATCHES_PER_CONNECTION) {
      kj::throwFatalException(
          KJ_EXCEPTION(OVERLOADED, kj::str("too many output watches on this connection (limit ",
                                           MAX_WATCHES_PER_CONNECTION, ")")));
    }
    auto params = context.getParams();
    context.getResults().setHandle(kj::heap<SubscriptionImpl>(
        job, params.getSink(), params.getFromOffset(), params.getFollow(), kj::addRef(*caller)));
    return kj::READY_NOW;
  }

 private:
  JobTable& table;
  EventLog& log;
  Job& job;
  kj::Own<Caller> caller;
  bool mayControl;

  void requireControl(kj::StringPtr action) {
    if (mayControl) return;
    log("permission denied: user=", caller->user, " peer=", caller->peer, " tried to ", action,
        " job ", job.id(), " of ", job.record().owner);
    kj::throwFatalException(
        KJ_EXCEPTION(FAILED, kj::str("permission denied: only the owner of job ", job.id(),
                                     " or an admin may ", action, " it")));
  }
};

class JobManagerImpl final : public api::JobManager::Server {
 public:
  JobManagerImpl(JobTable& table, EventLog& log, kj::Own<Caller> caller)
      : table(table), log(log), caller(kj::mv(caller)) {}

  kj::Promise<void> start(StartContext context) override {
    auto& job = table.start(caller->user, toStartRequest(context.getParams().getSpec()));
    auto results = context.getResults();
    results.setJob(newJob(job));
    fillJobInfo(results.initInfo(), job);
    return kj::READY_NOW;
  }

  kj::Promise<void> get(GetContext context) override {
    auto id = context.getParams().getId();
    KJ_IF_MAYBE(job, table.find(id)) {
      context.getResults().setJob(newJob(*job));
      return kj::READY_NOW;
    }
    kj::throwFatalException(KJ_EXCEPTION(FAILED, kj::str("job not found: ", id)));
  }

  kj::Promise<void> list(ListContext context) override {
    auto filter = context.getParams().getFilter();
    auto states = filter.getStates();
    kj::Vector<Job*> selected;
    for (auto job : table.all()) {
      if (!filter.getAllUsers() && job->record().owner != caller->user) continue;
      if (states.size() > 0) {
        bool match = false;
        for (auto state : states) match = match || toApiState(job->record().state) == state;
        if (!match) continue;
      }
      selected.add(job);
    }
    auto jobs = selected.asPtr();
    if (filter.getLimit() > 0 && jobs.size() > filter.getLimit()) {
      jobs = jobs.slice(jobs.size() - filter.getLimit(), jobs.size());
    }
    auto out = context.getResults().initJobs(jobs.size());
    for (auto i : kj::indices(jobs)) fillJobInfo(out[i], *jobs[i]);
    return kj::READY_NOW;
  }

  kj::Promise<void> whoami(WhoamiContext context) override {
    auto results = context.getResults();
    results.setUser(caller->user);
    results.setAdmin(caller->admin);
    return kj::READY_NOW;
  }

 private:
  JobTable& table;
  EventLog& log;
  kj::Own<Caller> caller;

  api::Job::Client newJob(Job& job) {
    return kj::heap<JobImpl>(table, log, job, kj::addRef(*caller));
  }
};

}  // namespace

api::JobManager::Client newJobManager(JobTable& table, EventLog& log, kj::Own<Caller> caller) {
  return kj::heap<JobManagerImpl>(table, log, kj::mv(caller));
}

}  // namespace runner

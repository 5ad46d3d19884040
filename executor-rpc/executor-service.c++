#include "executor-rpc/executor-service.h"

#include <capnp/capability.h>
#include <kj/debug.h>
#include <signal.h>

#include "executor-rpc/executor-wire.h"
#include "executors/spawn.h"

namespace runner::executor_rpc {
namespace {

bool isPlainName(kj::StringPtr id) {
  if (id.size() == 0 || id.size() > ExecutorService::MAX_JOB_ID) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

// A job the service holds. `ended` resolves when the main process has been reaped (the
// Process's own exit, observed whether or not anyone waits); `end` is set then.
struct ExecutorService::Held {
  kj::String id;
  kj::String executor;
  pid_t pid;
  uint64_t pidStartTime;
  kj::Own<executors::Process> process;
  kj::Maybe<executors::ExitStatus> end;
  // Declared after `process`: its branches must not outlive it.
  kj::ForkedPromise<void> ended = nullptr;

  void fillStarted(wire::Started::Builder out) const {
    out.setPid(pid);
    out.setPidStartTime(pidStartTime);
    fillPlacement(out.initPlacement(), process->placement());
  }
};

class ExecutorService::JobServer final : public wire::Job::Server {
 public:
  JobServer(ExecutorService& service, kj::StringPtr executor, kj::StringPtr jobId)
      : service(service), executor(kj::str(executor)), jobId(kj::str(jobId)) {}

 protected:
  kj::Promise<void> signal(SignalContext context) override {
    int number = context.getParams().getSignal();
    KJ_REQUIRE(number > 0 && number < NSIG, "not a signal", number);
    auto& job = held();
    if (job.end == nullptr) job.process->signalAll(number);
    return kj::READY_NOW;
  }

  kj::Promise<void> wait(WaitContext context) override {
    context.allowCancellation();
    return held().ended.addBranch().then([this, context]() mutable {
      fillExitStatus(context.getResults().initEnd(), KJ_ASSERT_NONNULL(held().end));
    });
  }

  kj::Promise<void> acknowledge(AcknowledgeContext context) override {
    auto& job = held();
    KJ_REQUIRE(job.end != nullptr, "the job is still running; only an ended job is acknowledged");
    service.log(kj::str("job acknowledged id=", jobId));
    service.forget(jobId);
    return kj::READY_NOW;
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
    kj::Maybe<kj::String> refusal;
    auto credentials = params.getCredentials();
    if (!isPlainName(jobId)) {
      refusal = kj::str("a job id is 1 to ", MAX_JOB_ID, " letters, digits, '-' or '_'");
    } else if (credentials.getUid() == 0 || credentials.getGid() == 0) {
      refusal = kj::str("a job may not run as root (uid ", credentials.getUid(), ", gid ",
                        credentials.getGid(), ")");
    } else if (service.held.find(jobId) != nullptr || service.launching.contains(jobId)) {
      refusal = kj::str("a job with this id is already held");
    }
    KJ_IF_MAYBE (reason, refusal) {
      service.log(kj::str("launch refused id=", jobId.slice(0, kj::min(jobId.size(), MAX_JOB_ID)),
                          ": ", *reason));
      return KJ_EXCEPTION(FAILED, kj::str("launch refused: ", *reason));
    }

    auto output = params.getOutput();
    service.launching.insert(kj::str(jobId));
    auto unreserve =
        kj::defer([this, jobId = kj::str(jobId)]() { service.launching.eraseMatch(jobId); });
    return output.getFd()
        .then([this, context, output](kj::Maybe<int> fd) mutable {
          KJ_IF_MAYBE (f, fd) {
            auto request = toLaunchRequest(context.getParams().getRequest(), *f);
            // The descriptor stays open with `output` until launch() has returned, which is as
            // long as the executor needs it.
            return executor.launch(kj::mv(request));
          }
          KJ_FAIL_REQUIRE("the launch request carried no output descriptor");
        })
        .then(
            [this, context, jobId = kj::mv(jobId)](executors::LaunchResult&& result) mutable {
              auto out = context.getResults().initResult();
              KJ_SWITCH_ONEOF(result) {
                KJ_CASE_ONEOF(process, kj::Own<executors::Process>) {
                  auto held = kj::heap<Held>();
                  held->id = kj::mv(jobId);
                  held->executor = kj::str(executor.name());
                  held->pid = process->pid();
                  held->pidStartTime = executors::processStartTime(held->pid).orDefault(0);
                  held->process = kj::mv(process);
                  auto& job = *held;
                  // Outlives this ExecutorServer (its connection may close): refers to the
                  // service only.
                  job.ended = job.process->onExit()
                                  .then([&service = service, &job](executors::ExitStatus status) {
                                    auto how = status.signaled
                                                   ? kj::str("signal=", status.termSignal)
                                                   : kj::str("exit=", status.exitCode);
                                    service.log(kj::str("job ended id=", job.id, " ", how));
                                    job.end = kj::mv(status);
                                  })
                                  .fork();
                  auto started = out.initStarted();
                  job.fillStarted(started.initInfo());
                  started.setJob(kj::heap<JobServer>(service, executor.name(), job.id));
                  service.log(kj::str("job started id=", job.id, " executor=", job.executor,
                                      " pid=", job.pid));
                  service.held.insert(job.id, kj::mv(held));
                }
                KJ_CASE_ONEOF(failure, executors::LaunchFailure) {
                  auto failed = out.initFailed();
                  failed.setErrorNumber(failure.errorNumber);
                  failed.setMessage(failure.message);
                }
              }
            },
            [this](kj::Exception&& e) {
              service.log(kj::str("launch refused: ", e.getDescription()));
              kj::throwFatalException(kj::mv(e));
            })
        .attach(kj::mv(unreserve));
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
      if (job->end == nullptr) job->process->signalAll(SIGKILL);
      return job->ended.addBranch().then([&service = service, jobId = kj::mv(jobId)]() {
        if (service.held.find(jobId) != nullptr) {
          service.log(kj::str("job discarded id=", jobId));
          service.forget(jobId);
        }
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
    KJ_FAIL_REQUIRE(kj::str("unknown executor '", name,
                            "' (known: ", kj::strArray(service.executors.names(), ", "), ")"));
  }

 private:
  ExecutorService& service;
};

ExecutorService::ExecutorService(executors::ExecutorSet& executors,
                                 kj::Function<void(kj::StringPtr)> log)
    : executors(executors), log(kj::mv(log)) {}

ExecutorService::~ExecutorService() noexcept(false) {
  if (held.size() > 0) {
    log(kj::str("killing the ", held.size(), " jobs still held"));
  }
}

wire::ExecutorHost::Client ExecutorService::newHost() {
  return kj::heap<HostServer>(*this);
}

kj::Maybe<ExecutorService::Held&> ExecutorService::find(kj::StringPtr jobId,
                                                        kj::StringPtr executor) {
  KJ_IF_MAYBE (job, held.find(jobId)) {
    if ((*job)->executor == executor) return **job;
  }
  return nullptr;
}

void ExecutorService::forget(kj::StringPtr jobId) {
  // The key points into the Held: erase it through the map, which destroys the Held last.
  held.erase(jobId);
}

}  // namespace runner::executor_rpc

#include "executor-rpc/remote-executor.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>
#include <string.h>

#include "executor-rpc/executor-wire.h"
#include "executor-rpc/unix-socket.h"

namespace runner::executor_rpc {
namespace {

// Hands a job's output descriptor to the other side: capnp attaches it to the message that
// carries this capability.
class OutputFileServer final : public wire::OutputFile::Server {
 public:
  explicit OutputFileServer(kj::AutoCloseFd fd) : fd(kj::mv(fd)) {}
  kj::Maybe<int> getFd() override { return fd.get(); }

 private:
  kj::AutoCloseFd fd;
};

bool isDisconnect(const kj::Exception& e) {
  return e.getType() == kj::Exception::Type::DISCONNECTED;
}

}  // namespace

struct ExecutorConnection::Link {
  kj::Own<kj::AsyncCapabilityStream> stream;
  capnp::TwoPartyClient client;
  wire::ExecutorHost::Client host;

  explicit Link(kj::Own<kj::AsyncCapabilityStream> s)
      : stream(kj::mv(s)),
        // capnp sends descriptors only on a network that may also receive them.
        client(*stream, MAX_FDS_PER_MESSAGE),
        host(client.bootstrap().castAs<wire::ExecutorHost>()) {}
};

ExecutorConnection::ExecutorConnection(kj::LowLevelAsyncIoProvider& provider, kj::Timer& timer,
                                       kj::StringPtr socketPath,
                                       kj::Function<void(kj::StringPtr)> log)
    : provider(provider), timer(timer), socketPath(kj::str(socketPath)), log(kj::mv(log)) {
  link = connectNow();
  isConnected = true;
  watching = run().eagerlyEvaluate([this](kj::Exception&& e) {
    this->log(kj::str("the executor host at ", this->socketPath, ": ", e.getDescription()));
  });
}

ExecutorConnection::~ExecutorConnection() noexcept(false) {}

kj::Own<ExecutorConnection::Link> ExecutorConnection::connectNow() {
  return kj::heap<Link>(provider.wrapUnixSocketFd(connectUnixSocket(socketPath),
                                                  kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
}

kj::Promise<void> ExecutorConnection::run() {
  return link->client.onDisconnect()
      .then([this]() {
        isConnected = false;
        log(kj::str("the executor host at ", socketPath,
                    " closed the connection; connecting again (its jobs are waited on once it "
                    "answers; starts fail meanwhile)"));
        return reconnect(0);
      })
      .then([this]() { return run(); });
}

kj::Promise<void> ExecutorConnection::reconnect(uint attempt) {
  return timer.afterDelay(RECONNECT_INTERVAL).then([this, attempt]() -> kj::Promise<void> {
    kj::Own<Link> fresh;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { fresh = connectNow(); })) {
      // Once at first, then about once a minute.
      if (attempt == 0 || attempt % 600 == 0) {
        log(kj::str("the executor host at ", socketPath, " does not answer yet: ",
                    e->getDescription()));
      }
      return reconnect(attempt + 1);
    }
    previousLink = kj::mv(link);
    link = kj::mv(fresh);
    isConnected = true;
    log(kj::str("connected again to the executor host at ", socketPath,
                "; taking back the jobs of ", executors.size(), " executors"));
    for (auto executor : executors) executor->rebind(link->host);
    return kj::READY_NOW;
  });
}

kj::Promise<kj::Array<kj::String>> ExecutorConnection::names() {
  return link->host.executorsRequest().send().then([](auto&& response) {
    return KJ_MAP(name, response.getNames()) { return kj::str(name); };
  });
}

kj::Promise<kj::Own<RemoteExecutor>> ExecutorConnection::executor(kj::StringPtr name) {
  auto request = link->host.executorRequest();
  request.setName(name);
  auto remote = request.send().getExecutor();
  // A pipelined call proves the other side knows the name before the first launch.
  return remote.listRequest().send().then(
      [this, name = kj::str(name), remote](auto&&) mutable -> kj::Own<RemoteExecutor> {
        return kj::heap<RemoteExecutor>(*this, kj::mv(name), kj::mv(remote));
      });
}

// A job the other side runs. Its end is watched from construction (one `wait` call, made again
// whenever the connection comes back), so the Process knows it has ended even if nobody asked.
class RemoteExecutor::Process final : public executors::Process {
 public:
  Process(RemoteExecutor& executor, kj::String jobId, wire::Job::Client job,
          wire::Started::Reader started,
          kj::PromiseFulfillerPair<executors::ExitStatus> end =
              kj::newPromiseAndFulfiller<executors::ExitStatus>())
      : executor(executor),
        jobId(kj::mv(jobId)),
        job(kj::mv(job)),
        mainPid(started.getPid()),
        mainStartTime(started.getPidStartTime()),
        where(toPlacement(started.getPlacement())),
        endFulfiller(kj::mv(end.fulfiller)),
        exited(end.promise.fork()) {
    executor.processes.insert(this);
    watch();
  }

  ~Process() noexcept(false) {
    executor.processes.erase(this);
    if (executor.connection.leaving) {
      return;
    } else if (ended) {
      // The owner has taken the end (the job table drops a Process once its end is on disk).
      executor.tasks.add(job.acknowledgeRequest().send().ignoreResult());
    } else {
      auto request = executor.remote.discardRequest();
      request.setJobId(jobId);
      executor.tasks.add(request.send().ignoreResult());
    }
  }

  KJ_DISALLOW_COPY(Process);

  pid_t pid() const override { return mainPid; }
  kj::Promise<executors::ExitStatus> onExit() override { return exited.addBranch(); }

  void signalAll(int signal) override {
    if (ended) return;
    if (!executor.connection.connected()) {
      // Delivered once the job is taken back.
      pending.add(signal);
      return;
    }
    send(signal);
  }

  kj::Promise<executors::Usage> usageSoFar() override {
    if (ended || !executor.connection.connected()) return executors::Usage();
    return job.usageRequest().send().then(
        [](auto&& response) { return toUsage(response.getUsage()); },
        // An executor that does not know the call (an older one) or lost the job: unknown.
        [](kj::Exception&&) { return executors::Usage(); });
  }

  const executors::Placement& placement() const override { return where; }

  executors::JobTrace trace() const override {
    executors::JobTrace trace;
    trace.pid = mainPid;
    trace.pidStartTime = mainStartTime;
    trace.placement = where.clone();
    return trace;
  }

  // The connection is back: the job is asked for again, and waited on.
  void readopt() {
    if (ended) return;
    auto request = executor.remote.adoptRequest();
    request.setJobId(jobId);
    // Pipelined: a job the other side no longer holds fails the wait below with its reason.
    job = request.send().getJob();
    watch();
    for (int signal : pending) send(signal);
    pending.clear();
  }

 private:
  RemoteExecutor& executor;
  kj::String jobId;
  wire::Job::Client job;
  pid_t mainPid;
  // As the other side read it when the job started (0 if it could not).
  uint64_t mainStartTime;
  executors::Placement where;
  bool ended = false;
  kj::Vector<int> pending;
  kj::Own<kj::PromiseFulfiller<executors::ExitStatus>> endFulfiller;
  kj::ForkedPromise<executors::ExitStatus> exited;
  kj::Promise<void> watching = nullptr;

  void send(int signal) {
    auto request = job.signalRequest();
    request.setSignal(signal);
    // Calls on one capability are delivered in order: a SIGTERM then a SIGKILL arrive so.
    executor.tasks.add(request.send().ignoreResult());
  }

  void watch() {
    watching = job.waitRequest()
                   .send()
                   .then(
                       [this](auto&& response) { end(toExitStatus(response.getEnd())); },
                       [this](kj::Exception&& e) {
                         // A lost connection is waited out: readopt() watches again.
                         if (isDisconnect(e)) return;
                         executors::ExitStatus lost;
                         lost.lost = kj::str("the executor '", executor.executorName,
                                             "' no longer holds the job (",
                                             e.getDescription(), ")");
                         end(kj::mv(lost));
                       })
                   .eagerlyEvaluate(nullptr);
  }

  void end(executors::ExitStatus status) {
    if (ended) return;
    ended = true;
    endFulfiller->fulfill(kj::mv(status));
  }
};

RemoteExecutor::RemoteExecutor(ExecutorConnection& connection, kj::String name,
                               wire::Executor::Client remote)
    : connection(connection), executorName(kj::mv(name)), remote(kj::mv(remote)), tasks(*this) {
  connection.executors.add(this);
}

RemoteExecutor::~RemoteExecutor() noexcept(false) {
  auto& all = connection.executors;
  for (auto i : kj::indices(all)) {
    if (all[i] == this) {
      all[i] = all.back();
      all.removeLast();
      break;
    }
  }
}

void RemoteExecutor::rebind(wire::ExecutorHost::Client& host) {
  auto request = host.executorRequest();
  request.setName(executorName);
  remote = request.send().getExecutor();
  for (auto process : processes) process->readopt();
}

kj::Promise<executors::LaunchResult> RemoteExecutor::launch(executors::LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
  // The other process's thread cannot run it.
  KJ_REQUIRE(request.beforeStart == nullptr, "a remote executor runs nothing before a start");
  int fd;
  KJ_SYSCALL(fd = fcntl(request.outputFd, F_DUPFD_CLOEXEC, 3), request.jobId);
  auto call = remote.launchRequest();
  auto wireRequest = call.initRequest();
  fillLaunchRequest(wireRequest, request);
  wireRequest.setOutput(kj::heap<OutputFileServer>(kj::AutoCloseFd(fd)));
  return call.send().then(
      [this, jobId = kj::mv(request.jobId)](auto&& response) mutable -> executors::LaunchResult {
        auto result = response.getResult();
        switch (result.which()) {
          case wire::LaunchResult::STARTED: {
            auto started = result.getStarted();
            kj::Own<executors::Process> process =
                kj::heap<Process>(*this, kj::mv(jobId), started.getJob(), started.getInfo());
            return kj::mv(process);
          }
          case wire::LaunchResult::FAILED: {
            auto failed = result.getFailed();
            return executors::LaunchFailure{failed.getErrorNumber(), kj::str(failed.getMessage())};
          }
        }
        KJ_FAIL_ASSERT("unknown launch result from the executor", (uint)result.which());
      },
      [this](kj::Exception&& e) -> executors::LaunchResult {
        kj::throwFatalException(explain(kj::mv(e)));
      });
}

kj::Promise<kj::Maybe<kj::Own<executors::Process>>> RemoteExecutor::adopt(kj::StringPtr jobId) {
  auto request = remote.adoptRequest();
  request.setJobId(jobId);
  return request.send().then(
      [this, jobId = kj::str(jobId)](auto&& response) mutable
      -> kj::Maybe<kj::Own<executors::Process>> {
        kj::Own<executors::Process> process =
            kj::heap<Process>(*this, kj::mv(jobId), response.getJob(), response.getStarted());
        return kj::mv(process);
      },
      [this](kj::Exception&& e) -> kj::Maybe<kj::Own<executors::Process>> {
        if (!isDisconnect(e) && strstr(e.getDescription().cStr(), "no such job") != nullptr) {
          return nullptr;
        }
        kj::throwFatalException(explain(kj::mv(e)));
      });
}

kj::Promise<kj::Array<kj::String>> RemoteExecutor::discardUnknown(
    kj::Function<bool(kj::StringPtr jobId)> isKnown) {
  return remote.listRequest().send().then([this, isKnown = kj::mv(isKnown)](
                                              auto&& response) mutable {
    kj::Vector<kj::Promise<void>> discarding;
    kj::Vector<kj::String> ids;
    for (auto job : response.getJobs()) {
      if (isKnown(job.getJobId())) continue;
      auto request = remote.discardRequest();
      request.setJobId(job.getJobId());
      discarding.add(request.send().ignoreResult());
      ids.add(kj::str(job.getJobId()));
    }
    return kj::joinPromises(discarding.releaseAsArray())
        .then([ids = ids.releaseAsArray()]() mutable { return kj::mv(ids); });
  });
}

void RemoteExecutor::taskFailed(kj::Exception&& exception) {
  if (isDisconnect(exception)) return;  // said once, by the connection
  connection.log(kj::str("executor ", executorName, " at ", connection.socketPath, ": ",
                         exception.getDescription()));
}

kj::Exception RemoteExecutor::explain(kj::Exception&& e) {
  if (!isDisconnect(e)) return kj::mv(e);
  // Clients read this: no path of the server's (the log has it).
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::str("the executor '", executorName,
                               "' is not answering; try again later"));
}

}  // namespace runner::executor_rpc

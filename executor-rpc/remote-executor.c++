#include "executor-rpc/remote-executor.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>

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

}  // namespace

ExecutorConnection::ExecutorConnection(kj::LowLevelAsyncIoProvider& provider,
                                       kj::StringPtr socketPath,
                                       kj::Function<void(kj::StringPtr)> log)
    : socketPath(kj::str(socketPath)),
      log(kj::mv(log)),
      stream(provider.wrapUnixSocketFd(connectUnixSocket(socketPath),
                                       kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
      // capnp sends descriptors only on a network that may also receive them.
      client(*stream, MAX_FDS_PER_MESSAGE),
      host(client.bootstrap().castAs<wire::ExecutorHost>()),
      disconnected(client.onDisconnect()
                       .then([this]() {
                         this->log(kj::str("the executor host at ", this->socketPath,
                                           " closed the connection: its executors cannot start "
                                           "jobs until runnerd is restarted"));
                       })
                       .eagerlyEvaluate(nullptr)) {}

ExecutorConnection::~ExecutorConnection() noexcept(false) {}

kj::Promise<kj::Own<RemoteExecutor>> ExecutorConnection::executor(kj::StringPtr name) {
  auto request = host.executorRequest();
  request.setName(name);
  auto remote = request.send().getExecutor();
  // A pipelined call proves the other side knows the name before the first launch.
  return remote.listRequest().send().then(
      [this, name = kj::str(name), remote](auto&&) mutable -> kj::Own<RemoteExecutor> {
        return kj::heap<RemoteExecutor>(kj::mv(name), kj::str(socketPath), kj::mv(remote), log);
      });
}

// A job the other side runs. Its end is watched from construction (one `wait` call), so the
// Process knows it has ended even if nobody asked.
class RemoteExecutor::Process final : public executors::Process {
 public:
  Process(RemoteExecutor& executor, kj::String jobId, wire::Job::Client job,
          wire::Started::Reader started)
      : executor(executor),
        jobId(kj::mv(jobId)),
        job(kj::mv(job)),
        mainPid(started.getPid()),
        where(toPlacement(started.getPlacement())),
        exited(this->job.waitRequest()
                   .send()
                   .then(
                       [this](auto&& response) {
                         ended = true;
                         return toExitStatus(response.getEnd());
                       },
                       [this](kj::Exception&& e) -> executors::ExitStatus {
                         kj::throwFatalException(this->executor.explain(kj::mv(e)));
                       })
                   .fork()) {}

  ~Process() noexcept(false) {
    if (ended) {
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
    auto request = job.signalRequest();
    request.setSignal(signal);
    // Calls on one capability are delivered in order: a SIGTERM then a SIGKILL arrive so.
    executor.tasks.add(request.send().ignoreResult());
  }

  const executors::Placement& placement() const override { return where; }

 private:
  RemoteExecutor& executor;
  kj::String jobId;
  wire::Job::Client job;
  pid_t mainPid;
  executors::Placement where;
  bool ended = false;
  kj::ForkedPromise<executors::ExitStatus> exited;
};

RemoteExecutor::RemoteExecutor(kj::String name, kj::String where, wire::Executor::Client remote,
                               kj::Function<void(kj::StringPtr)>& log)
    : executorName(kj::mv(name)),
      where(kj::mv(where)),
      remote(kj::mv(remote)),
      log(log),
      tasks(*this) {}

RemoteExecutor::~RemoteExecutor() noexcept(false) {}

kj::Promise<executors::LaunchResult> RemoteExecutor::launch(executors::LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
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

kj::Promise<kj::Array<kj::String>> RemoteExecutor::discardHeld() {
  return remote.listRequest().send().then([this](auto&& response) {
    kj::Vector<kj::Promise<void>> discarding;
    kj::Vector<kj::String> ids;
    for (auto job : response.getJobs()) {
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
  log(kj::str("executor ", executorName, " at ", where, ": ",
              explain(kj::mv(exception)).getDescription()));
}

kj::Exception RemoteExecutor::explain(kj::Exception&& e) {
  if (e.getType() != kj::Exception::Type::DISCONNECTED) return kj::mv(e);
  // Clients read this: no path of the server's (the log has it).
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::str("the executor '", executorName,
                               "' is not answering; try again later"));
}

}  // namespace runner::executor_rpc

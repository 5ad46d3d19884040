#pragma once
// RemoteExecutor: an executors::Executor whose jobs are run by another process (runner-supervisor,
// or an executor extension) that serves schema/executor.capnp on a Unix socket. The job table uses
// it like any other executor.
//
// The job's output descriptor travels with the launch (capnp descriptor passing), so the other
// side writes exactly where runnerd could. A Process's end is acknowledged to the other side when
// the Process is destroyed after its end was seen (the job table drops it once the end is on
// disk); a Process destroyed while its job runs has the job discarded (killed and forgotten).

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "executors/executor.h"
#include "schema/executor.capnp.h"

namespace runner::executor_rpc {

class RemoteExecutor;

// One connection to a process serving ExecutorHost on a Unix socket.
class ExecutorConnection {
 public:
  // Connects to `socketPath`; throws one clear line when nothing answers there. `log` receives
  // a line when the connection is lost. Must outlive every RemoteExecutor it makes.
  ExecutorConnection(kj::LowLevelAsyncIoProvider& provider, kj::StringPtr socketPath,
                     kj::Function<void(kj::StringPtr)> log);
  ~ExecutorConnection() noexcept(false);
  KJ_DISALLOW_COPY(ExecutorConnection);

  // The remote executor called `name`, known here by the same name. Resolves once the other side
  // has said it serves it; rejects with its one-line refusal otherwise.
  kj::Promise<kj::Own<RemoteExecutor>> executor(kj::StringPtr name);

  kj::StringPtr path() const { return socketPath; }

 private:
  kj::String socketPath;
  kj::Function<void(kj::StringPtr)> log;
  kj::Own<kj::AsyncCapabilityStream> stream;
  capnp::TwoPartyClient client;
  wire::ExecutorHost::Client host;
  kj::Promise<void> disconnected;
};

class RemoteExecutor final : public executors::Executor, private kj::TaskSet::ErrorHandler {
 public:
  RemoteExecutor(kj::String name, kj::String where, wire::Executor::Client remote,
                 kj::Function<void(kj::StringPtr)>& log);
  ~RemoteExecutor() noexcept(false);

  kj::StringPtr name() const override { return executorName; }

  // The output descriptor is duplicated at once: the caller may close its own when this returns.
  kj::Promise<executors::LaunchResult> launch(executors::LaunchRequest&& request) override;

  // Kills and forgets every job the other side holds for this executor, and resolves with their
  // ids once they are gone. For a runnerd that cannot take jobs back across its restart: it finds
  // them recorded as running and reports them lost.
  kj::Promise<kj::Array<kj::String>> discardHeld();

 private:
  class Process;
  kj::String executorName;
  // The socket, for errors.
  kj::String where;
  wire::Executor::Client remote;
  kj::Function<void(kj::StringPtr)>& log;
  // Acknowledgements and discards sent by Processes that are gone.
  kj::TaskSet tasks;

  void taskFailed(kj::Exception&& exception) override;
  // A DISCONNECTED exception turned into one line that names the executor and its socket.
  kj::Exception explain(kj::Exception&& e);
};

}  // namespace runner::executor_rpc

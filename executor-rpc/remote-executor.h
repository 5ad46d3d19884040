#pragma once
// RemoteExecutor: an executors::Executor whose jobs are run by another process (runner-supervisor,
// or an executor extension) that serves schema/executor.capnp on a Unix socket. The job table uses
// it like any other executor; its jobs outlive runnerd (keepsJobs()).
//
// The job's output descriptor travels with the launch (capnp descriptor passing), so the other
// side writes exactly where runnerd could. A Process's end is acknowledged to the other side when
// the Process is destroyed after its end was seen (the job table drops it once the end is on
// disk); a Process destroyed while its job runs has the job discarded (killed and forgotten).
//
// The connection comes back by itself: when the other side goes away (it re-execs itself for an
// upgrade, or crashed and was started again), ExecutorConnection connects again, and every
// Process takes its job back (Executor.adopt) and waits on. A job the other side no longer holds
// ends `lost`. Meanwhile launches fail with one line saying the executor is not answering.

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <unordered_set>

#include "executors/executor.h"
#include "schema/executor.capnp.h"

namespace runner::executor_rpc {

class RemoteExecutor;

// One connection to a process serving ExecutorHost on a Unix socket, made again whenever it is
// lost.
class ExecutorConnection {
 public:
  // Connects to `socketPath`; throws one clear line when nothing answers there. `log` receives
  // a line when the connection is lost and when it is back. `timer` paces the reconnections.
  // Must outlive every RemoteExecutor it makes.
  ExecutorConnection(kj::LowLevelAsyncIoProvider& provider, kj::Timer& timer,
                     kj::StringPtr socketPath, kj::Function<void(kj::StringPtr)> log);
  ~ExecutorConnection() noexcept(false);
  KJ_DISALLOW_COPY(ExecutorConnection);

  // The names of the executors the other side serves, in its order.
  kj::Promise<kj::Array<kj::String>> names();

  // The remote executor called `name`, known here by the same name. Resolves once the other side
  // has said it serves it; rejects with its one-line refusal otherwise.
  kj::Promise<kj::Own<RemoteExecutor>> executor(kj::StringPtr name);

  kj::StringPtr path() const { return socketPath; }
  bool connected() const { return isConnected; }

  // runnerd is going away: Processes destroyed from now on leave their jobs as they are (running,
  // or ended and not acknowledged) for the next runnerd to take back.
  void leaveJobs() { leaving = true; }

  // Between two attempts to connect again.
  static constexpr kj::Duration RECONNECT_INTERVAL = 100 * kj::MILLISECONDS;

 private:
  friend class RemoteExecutor;
  struct Link;

  kj::LowLevelAsyncIoProvider& provider;
  kj::Timer& timer;
  kj::String socketPath;
  kj::Function<void(kj::StringPtr)> log;
  kj::Own<Link> link;
  // The link before the current one: capabilities of it may still be referred to by promises
  // that failed with it, so it goes only once another link has replaced it.
  kj::Own<Link> previousLink;
  bool isConnected = false;
  bool leaving = false;
  kj::Vector<RemoteExecutor*> executors;
  kj::Promise<void> watching = nullptr;

  kj::Own<Link> connectNow();
  // Waits for the connection to close, makes it again, and so on.
  kj::Promise<void> run();
  kj::Promise<void> reconnect(uint attempt);
};

class RemoteExecutor final : public executors::Executor, private kj::TaskSet::ErrorHandler {
 public:
  friend class ExecutorConnection;
  RemoteExecutor(ExecutorConnection& connection, kj::String name, wire::Executor::Client remote);
  ~RemoteExecutor() noexcept(false);

  kj::StringPtr name() const override { return executorName; }

  // The output descriptor is duplicated at once: the caller may close its own when this returns.
  kj::Promise<executors::LaunchResult> launch(executors::LaunchRequest&& request) override;

  bool keepsJobs() const override { return true; }
  kj::Promise<kj::Maybe<kj::Own<executors::Process>>> adopt(kj::StringPtr jobId) override;
  kj::Promise<kj::Array<kj::String>> discardUnknown(
      kj::Function<bool(kj::StringPtr jobId)> isKnown) override;

 private:
  class Process;
  ExecutorConnection& connection;
  kj::String executorName;
  wire::Executor::Client remote;
  // Processes alive, which take their jobs back when the connection is made again.
  std::unordered_set<Process*> processes;
  // Acknowledgements and discards sent by Processes that are gone.
  kj::TaskSet tasks;

  // The connection was made again: the executor and its jobs are asked for once more.
  void rebind(wire::ExecutorHost::Client& host);

  void taskFailed(kj::Exception&& exception) override;
  // A DISCONNECTED exception turned into one line that names the executor (not its socket).
  kj::Exception explain(kj::Exception&& e);
};

}  // namespace runner::executor_rpc

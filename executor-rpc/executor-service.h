#pragma once
// ExecutorService: serves an ExecutorSet as schema/executor.capnp's ExecutorHost, and holds the
// jobs it launched, by job id, until their ends are acknowledged.
//
// The jobs belong to the service, not to a connection: a client that goes away leaves them
// running and their ends kept, and a client that connects later finds them (Executor.list) and
// takes them back (Executor.adopt) or lets them go (Executor.discard). Destroying the service
// kills every job it still holds (the Processes' destructors).
//
// Every request is checked as if it came from a hostile client: a job id must be a plain name
// (it names a cgroup), a job never runs as uid or gid 0, and the output arrives as a descriptor
// the client already holds, never as a path. Refusals are logged, one line each.

#include <kj/function.h>
#include <kj/map.h>

#include "executors/executor.h"
#include "schema/executor.capnp.h"

namespace runner::executor_rpc {

class ExecutorService {
 public:
  // `executors` must outlive the service; `log` receives one line per event (a launch refused, a
  // job started, ended, acknowledged or discarded).
  ExecutorService(executors::ExecutorSet& executors, kj::Function<void(kj::StringPtr)> log);
  ~ExecutorService() noexcept(false);
  KJ_DISALLOW_COPY(ExecutorService);

  // A bootstrap capability for one more connection.
  wire::ExecutorHost::Client newHost();

  // Jobs held: running, or ended and not acknowledged.
  size_t heldCount() const { return held.size(); }

  // Longest job id accepted.
  static constexpr size_t MAX_JOB_ID = 64;

 private:
  struct Held;
  class HostServer;
  class ExecutorServer;
  class JobServer;

  executors::ExecutorSet& executors;
  kj::Function<void(kj::StringPtr)> log;
  kj::HashMap<kj::StringPtr, kj::Own<Held>> held;
  // Ids of launches under way: a second launch of the same id is refused.
  kj::HashSet<kj::String> launching;

  kj::Maybe<Held&> find(kj::StringPtr jobId, kj::StringPtr executor);
  void forget(kj::StringPtr jobId);
};

}  // namespace runner::executor_rpc

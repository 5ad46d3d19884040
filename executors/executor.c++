#include "executors/executor.h"

#include <kj/debug.h>

namespace runner::executors {

kj::Own<Process> Executor::reattach(const JobTrace& trace) {
  kj::throwFatalException(
      KJ_EXCEPTION(UNIMPLEMENTED, "this executor cannot take a job back", name(), trace.pid));
}

kj::Promise<void> Executor::killRemains(kj::StringPtr jobId, const JobTrace& trace) {
  return KJ_EXCEPTION(UNIMPLEMENTED, "this executor cannot find what is left of a job", name(),
                      jobId);
}

void ExecutorSet::add(kj::Own<Executor> executor) {
  KJ_REQUIRE(find(executor->name()) == nullptr, "executor registered twice", executor->name());
  executors.add(kj::mv(executor));
}

kj::Maybe<Executor&> ExecutorSet::find(kj::StringPtr name) {
  for (auto& executor : executors) {
    if (executor->name() == name) return *executor;
  }
  return nullptr;
}

kj::Array<kj::StringPtr> ExecutorSet::names() const {
  return KJ_MAP(executor, executors) {
    return executor->name();
  };
}

}  // namespace runner::executors

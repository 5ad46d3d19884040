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

namespace {

class RenamedExecutor final : public Executor {
 public:
  RenamedExecutor(kj::Own<Executor> inner, kj::StringPtr name)
      : inner(kj::mv(inner)), ownName(kj::str(name)) {}

  kj::StringPtr name() const override { return ownName; }
  kj::Promise<LaunchResult> launch(LaunchRequest&& request) override {
    return inner->launch(kj::mv(request));
  }
  kj::Own<Process> reattach(const JobTrace& trace) override { return inner->reattach(trace); }
  kj::Promise<void> killRemains(kj::StringPtr jobId, const JobTrace& trace) override {
    return inner->killRemains(jobId, trace);
  }
  kj::Promise<void> drain() override { return inner->drain(); }
  kj::Array<kj::String> sweepLeftovers(
      kj::FunctionParam<bool(kj::StringPtr name)> isOurs) override {
    return inner->sweepLeftovers(isOurs);
  }
  bool keepsJobs() const override { return inner->keepsJobs(); }
  kj::Promise<kj::Maybe<kj::Own<Process>>> adopt(kj::StringPtr jobId) override {
    return inner->adopt(jobId);
  }
  kj::Promise<kj::Array<kj::String>> discardUnknown(
      kj::Function<bool(kj::StringPtr jobId)> isKnown) override {
    return inner->discardUnknown(kj::mv(isKnown));
  }

 private:
  kj::Own<Executor> inner;
  kj::String ownName;
};

}  // namespace

kj::Own<Executor> renamed(kj::Own<Executor> executor, kj::StringPtr name) {
  if (executor->name() == name) return executor;
  return kj::heap<RenamedExecutor>(kj::mv(executor), name);
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

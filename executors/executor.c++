#include "executors/executor.h"

#include <kj/debug.h>

namespace runner::executors {

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

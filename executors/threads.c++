#include "executors/threads.h"

#include <kj/debug.h>
#include <signal.h>

namespace runner::executors {

kj::Own<kj::Thread> startQuietThread(kj::Function<void()> func) {
  // The new thread inherits the creating thread's mask at once, so no signal can reach it
  // before it could block them itself.
  sigset_t all, saved;
  sigfillset(&all);
  KJ_ASSERT(pthread_sigmask(SIG_SETMASK, &all, &saved) == 0);
  KJ_DEFER(KJ_ASSERT(pthread_sigmask(SIG_SETMASK, &saved, nullptr) == 0));
  return kj::heap<kj::Thread>(kj::mv(func));
}

Disposer::Disposer() : thread(startQuietThread([this]() { run(); })) {}

Disposer::~Disposer() noexcept(false) {
  state.lockExclusive()->stopping = true;
  thread = nullptr;  // joins once the queue is empty
}

void Disposer::queue(kj::Function<void()> work) {
  state.lockExclusive()->queue.add(kj::mv(work));
}

bool Disposer::idle() const {
  auto lock = state.lockShared();
  return lock->queue.empty() && !lock->working;
}

void Disposer::run() {
  for (;;) {
    kj::Vector<kj::Function<void()>> batch;
    {
      auto lock = state.lockExclusive();
      lock->working = false;
      lock.wait([](const State& state) { return state.stopping || !state.queue.empty(); });
      if (lock->queue.empty()) return;  // stopping
      batch = kj::mv(lock->queue);
      lock->queue = kj::Vector<kj::Function<void()>>();
      lock->working = true;
    }
    for (auto& work : batch) {
      // Each piece of work logs what it could not do (a JobCgroup's destructor does).
      KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { work(); })) {
        KJ_LOG(ERROR, "disposing of an ended job's resource failed", *exception);
      }
    }
  }
}

}  // namespace runner::executors

#pragma once
// Helper threads of runnerd: they never take a signal.

#include <kj/async.h>
#include <kj/exception.h>
#include <kj/function.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/mutex.h>
#include <kj/thread.h>
#include <kj/vector.h>

namespace runner::executors {

// Starts `func` on a new thread with every signal blocked, for good: runnerd's signals are
// taken on the event loop (KJ's signalfd), whichever threads exist when they arrive, and a
// process the thread creates inherits the mask until it resets it.
kj::Own<kj::Thread> startQuietThread(kj::Function<void()> func);

// Runs `work` on a quiet thread of its own and resolves, on the calling thread's event loop, with
// what it returns or throws: for the rare blocking task that has no thread of its own (reading a
// few files on a reload). `work` must own everything it uses. The thread is detached, so the
// caller never waits for it: a result nobody waits for any more is dropped, and a thread stuck on
// a disk that does not answer holds nothing of the caller's.
template <typename T>
kj::Promise<T> runOffLoop(kj::Function<T()> work) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
  auto thread = startQuietThread(
      [work = kj::mv(work), fulfiller = kj::mv(paf.fulfiller)]() mutable {
        KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { fulfiller->fulfill(work()); })) {
          fulfiller->reject(kj::mv(*e));
        }
      });
  thread->detach();
  return kj::mv(paf.promise);
}

// Destroys, on a thread of its own and in order, what takes the kernel a while to let go of: an
// ended job's cgroup (an rmdir per hierarchy, retried while busy). A job's end is reported
// without waiting for it. What is queued when the Disposer is destroyed is
// destroyed first.
class Disposer {
 public:
  Disposer();
  ~Disposer() noexcept(false);
  KJ_DISALLOW_COPY(Disposer);

  template <typename T>
  void dispose(kj::Own<T> object) {
    queue([object = kj::mv(object)]() mutable { object = nullptr; });
  }

  // Nothing is queued and the thread is not destroying anything.
  bool idle() const;

 private:
  struct State {
    kj::Vector<kj::Function<void()>> queue;
    bool working = false;
    bool stopping = false;
  };
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  void queue(kj::Function<void()> work);
  void run();
};

}  // namespace runner::executors

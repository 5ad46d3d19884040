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

}  // namespace runner::executors

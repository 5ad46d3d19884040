#pragma once
// Helper threads of runnerd: they never take a signal.

#include <kj/function.h>
#include <kj/memory.h>
#include <kj/thread.h>

namespace runner::executors {

// Starts `func` on a new thread with every signal blocked, for good: runnerd's signals are
// taken on the event loop (KJ's signalfd), whichever threads exist when they arrive, and a
// process the thread creates inherits the mask until it resets it.
kj::Own<kj::Thread> startQuietThread(kj::Function<void()> func);

}  // namespace runner::executors

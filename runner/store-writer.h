#pragma once
// StoreWriter: the thread that writes the job store, so that the event loop never waits for a
// disk.
//
// The event loop queues each write and gets a promise; the thread takes everything queued at
// once, applies it in one transaction and commits it with one sync (group commit: many starts
// and ends share the wait for the disk), then resolves each write's promise on the event loop.
// A promise resolves only once its write is durable; it rejects when its write failed. Writes
// are applied in the order they were queued, so a job's own writes keep their order.

#include <kj/async.h>
#include <kj/mutex.h>
#include <kj/thread.h>
#include <kj/time.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "runner/metrics.h"
#include "runner/store.h"

namespace runner {

// How long a client waits for a write of the store it depends on before being told that the
// store is not answering (a frozen or failing disk).
constexpr kj::Duration STORE_DEADLINE = 10 * kj::SECONDS;

// The one-line error a client reads then. It names no path of the server's.
constexpr kj::StringPtr STORE_NOT_ANSWERING =
    "the state store is not answering (its disk is frozen, full or failing); try again later"_kj;

// STORE_NOT_ANSWERING as the exception a client reads: "unavailable: " and that line (FAILED).
kj::Exception storeNotAnswering();
// Whether `exception` is storeNotAnswering()'s.
bool isStoreNotAnswering(const kj::Exception& exception);

class StoreWriter {
 public:
  // Starts the thread. From now on, `store` is written only through this object (reads at
  // start-up are done by then); `store` outlives it.
  explicit StoreWriter(Store& store);
  // Writes what is queued, then stops the thread (waiting for the disk if it must).
  ~StoreWriter() noexcept(false);
  KJ_DISALLOW_COPY(StoreWriter);

  // Call on the event loop's thread. Each resolves once the write is on disk; rejects with the
  // store's own error (which may name the database's path: log it, do not send it to a client).
  kj::Promise<void> insert(JobRecord record);
  kj::Promise<void> update(JobRecord record);
  kj::Promise<void> forget(kj::String id);

  // Writes queued and not yet taken by the thread (which grows while the disk does not answer).
  size_t backlog() const;

  // Transactions committed so far (for tests).
  uint64_t transactions() const;

  // How long each transaction took to apply and commit (its sync included), so far.
  Histogram latency() const;

  // How long the oldest write not yet committed has waited, or nullptr when none waits. Long
  // waits mean the disk is not answering.
  kj::Maybe<kj::Duration> waiting() const;

 private:
  struct State {
    kj::Vector<StoreWrite> writes;
    kj::Vector<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> done;
    uint64_t transactions = 0;
    bool stopping = false;
    Histogram latency{STORE_LATENCY_BOUNDS};
    // When the first of `writes` was queued, and when the thread took the batch it is writing.
    kj::TimePoint firstQueued = kj::origin<kj::TimePoint>();
    kj::Maybe<kj::TimePoint> writingSince;
  };

  Store& store;
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  kj::Promise<void> queue(StoreWrite write);
  void run();
};

// `promise`, or STORE_NOT_ANSWERING once `deadline` has passed.
kj::Promise<void> withStoreDeadline(kj::Timer& timer, kj::Promise<void> promise,
                                    kj::Duration deadline = STORE_DEADLINE);

}  // namespace runner

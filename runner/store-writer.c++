#include "runner/store-writer.h"

#include <kj/debug.h>

#include "executors/threads.h"
#include "runner/user-error.h"

namespace runner {

kj::Exception storeNotAnswering() {
  return userError(ErrorKind::UNAVAILABLE, STORE_NOT_ANSWERING);
}

bool isStoreNotAnswering(const kj::Exception& exception) {
  return exception.getDescription() == storeNotAnswering().getDescription();
}

StoreWriter::StoreWriter(Store& store) : store(store) {
  thread = executors::startQuietThread([this]() { run(); });
}

StoreWriter::~StoreWriter() noexcept(false) {
  state.lockExclusive()->stopping = true;
  thread = nullptr;  // joins, once the queue is written
}

kj::Promise<void> StoreWriter::insert(JobRecord record) {
  return queue(StoreWrite{StoreWrite::Kind::INSERT, kj::mv(record)});
}

kj::Promise<void> StoreWriter::update(JobRecord record) {
  return queue(StoreWrite{StoreWrite::Kind::UPDATE, kj::mv(record)});
}

kj::Promise<void> StoreWriter::forget(kj::String id) {
  JobRecord record;
  record.id = kj::mv(id);
  return queue(StoreWrite{StoreWrite::Kind::FORGET, kj::mv(record)});
}

size_t StoreWriter::backlog() const {
  return state.lockShared()->writes.size();
}

uint64_t StoreWriter::transactions() const {
  return state.lockShared()->transactions;
}

Histogram StoreWriter::latency() const {
  return state.lockShared()->latency.clone();
}

kj::Maybe<kj::Duration> StoreWriter::waiting() const {
  auto now = kj::systemPreciseMonotonicClock().now();
  auto lock = state.lockShared();
  kj::Maybe<kj::TimePoint> since = lock->writingSince;
  if (since == nullptr && !lock->writes.empty()) since = lock->firstQueued;
  return since.map([now](kj::TimePoint t) { return now - t; });
}

kj::Promise<void> StoreWriter::queue(StoreWrite write) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto lock = state.lockExclusive();
  KJ_REQUIRE(!lock->stopping, "the store writer is stopping");
  if (lock->writes.empty()) lock->firstQueued = kj::systemPreciseMonotonicClock().now();
  lock->writes.add(kj::mv(write));
  lock->done.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void StoreWriter::run() {
  for (;;) {
    kj::Vector<StoreWrite> writes;
    kj::Vector<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> done;
    {
      auto lock = state.lockExclusive();
      lock.wait([](const State& s) { return s.stopping || !s.writes.empty(); });
      if (lock->writes.empty()) return;
      // The batch has waited since its first write was queued.
      lock->writingSince = lock->firstQueued;
      writes = kj::mv(lock->writes);
      done = kj::mv(lock->done);
      lock->writes = kj::Vector<StoreWrite>();
      lock->done = kj::Vector<kj::Own<kj::CrossThreadPromiseFulfiller<void>>>();
    }
    kj::Array<kj::Maybe<kj::Exception>> results;
    auto begun = kj::systemPreciseMonotonicClock().now();
    auto failure = kj::runCatchingExceptions([&]() { results = store.apply(writes); });
    {
      auto lock = state.lockExclusive();
      lock->writingSince = nullptr;
      lock->latency.observe(kj::systemPreciseMonotonicClock().now() - begun);
      if (failure == nullptr) ++lock->transactions;
    }
    KJ_IF_MAYBE (e, failure) {
      // Nothing of the batch is stored.
      for (auto& fulfiller : done) fulfiller->reject(kj::cp(*e));
      continue;
    }
    for (auto i : kj::indices(done)) {
      KJ_IF_MAYBE (e, results[i]) {
        done[i]->reject(kj::mv(*e));
      } else {
        done[i]->fulfill();
      }
    }
  }
}

kj::Promise<void> withStoreDeadline(kj::Timer& timer, kj::Promise<void> promise,
                                    kj::Duration deadline) {
  return promise.exclusiveJoin(
      timer.afterDelay(deadline).then([]() -> kj::Promise<void> { return storeNotAnswering(); }));
}

}  // namespace runner

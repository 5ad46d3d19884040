#pragma once
// Wakeup: one event that any number of callers wait for, as a kj::ForkedPromise.
//
// Each wait is a branch of one forked promise: adding one and cancelling one cost O(1), however
// many there are, and firing wakes them all. After firing, the next wait waits for the next
// firing. Nothing is allocated until somebody waits.

#include <kj/async.h>
#include <kj/debug.h>

namespace runner {

class Wakeup {
 public:
  // Resolves at the next fire().
  kj::Promise<void> next() {
    if (pending == nullptr) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      pending = Pending{kj::mv(paf.fulfiller), paf.promise.fork()};
    }
    return KJ_ASSERT_NONNULL(pending).forked.addBranch();
  }

  // Rejects every current waiter's promise with `exception`.
  void fail(kj::Exception&& exception) {
    KJ_IF_MAYBE (p, pending) {
      auto fulfiller = kj::mv(p->fulfiller);
      pending = nullptr;
      fulfiller->reject(kj::mv(exception));
    }
  }

  // Wakes every current waiter.
  void fire() {
    KJ_IF_MAYBE (p, pending) {
      auto fulfiller = kj::mv(p->fulfiller);
      // The branches hold the hub; the forked promise itself can go.
      pending = nullptr;
      fulfiller->fulfill();
    }
  }

 private:
  struct Pending {
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
    kj::ForkedPromise<void> forked;
  };
  kj::Maybe<Pending> pending;
};

}  // namespace runner

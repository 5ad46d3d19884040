#pragma once
// OutputWatcher: one inotify descriptor for the whole server, telling jobs that their output
// file changed.
//
// epoll cannot watch a regular file, so followers that reached the end of a running job's
// output sleep on an inotify watch instead of polling. The watcher reads its descriptor until
// EAGAIN and wakes every waiter of each file that changed; a waiter then re-reads the file from
// its own offset with pread() until it returns 0.

#include <kj/async-unix.h>
#include <kj/map.h>
#include <kj/refcount.h>
#include <kj/vector.h>
#include <stdint.h>

#include "runner/wakeup.h"

namespace runner {

class OutputWatcher {
 public:
  explicit OutputWatcher(kj::UnixEventPort& eventPort);
  ~OutputWatcher() noexcept(false);
  KJ_DISALLOW_COPY(OutputWatcher);

  class Watch {
   public:
    ~Watch() noexcept(false);
    KJ_DISALLOW_COPY(Watch);

    // Resolves at the next change of the file (or spuriously, which callers tolerate: they
    // re-read and wait again). Any number of callers may wait at once. To never miss a change,
    // wait first, then read: a change after the read always resolves the promise.
    kj::Promise<void> nextChange();

    // Wakes every waiter now, as a change would (for instance when the job has ended).
    void wakeAll();

    // Writes wake nobody, not even the event loop, until the returned object is dropped (pauses
    // nest); then every waiter is woken, as a change in between would have. A follower of a
    // writer that streams lets its output gather for a moment this way, instead of being woken
    // by each of its writes. `fd`, open on the watched file while the pause lasts (the job's
    // output descriptor), is what the watch is changed through, whatever became of the path.
    kj::Own<void> pause(int fd);

    // Use OutputWatcher::watch().
    Watch(OutputWatcher& watcher, int wd);

   private:
    // What a pause refers to: it may outlive the Watch (the job ends while a follower waits).
    struct Pauses : public kj::Refcounted {
      Watch* watch;
      kj::uint count = 0;
      int fd = -1;
      explicit Pauses(Watch* watch) : watch(watch) {}
    };

    OutputWatcher& watcher;
    int wd;
    kj::Own<Pauses> pauses;
    // A change of the watch's mask failed: it is never paused again.
    bool unpausable = false;
    Wakeup changed;

    void resume();
    bool setMask(uint32_t mask);
  };

  // Watches `path` (an existing file) for writes until the returned Watch is destroyed.
  kj::Own<Watch> watch(kj::StringPtr path);

 private:
  kj::AutoCloseFd inotifyFd;
  kj::UnixEventPort::FdObserver observer;
  kj::HashMap<int, Watch*> watches;
  kj::Promise<void> readLoop;

  kj::Promise<void> readEvents();
};

}  // namespace runner

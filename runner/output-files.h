#pragma once
// OutputFiles: makes each job's output file, <dir>/<id>.log, ahead of need.
//
// Creating a file allocates an inode and inserts a directory entry. On some file systems that
// is slow: ext4 without a journal checks candidate inodes one by one for a recent deletion, and
// a host that creates and deletes many files pays 100-500 microseconds per file, more than
// the rest of a job's start. So a background thread keeps a few empty files ready under hidden
// names (.spare-*, made with mknod, so that they hold no descriptor), and a job's start only
// renames one to <id>.log and opens it. When none is ready, or the rename fails, the file is
// made directly, as it would be without spares, so a start never depends on the thread.
//
// On the event loop, even the rename may wait for the disk (a frozen or failing file system):
// there, files are made and removed through the same thread (createOnThread, removeOnThread),
// in the order asked, and the loop gets a promise.

#include <kj/function.h>
#include <kj/async.h>
#include <kj/io.h>
#include <kj/mutex.h>
#include <kj/string.h>
#include <kj/thread.h>
#include <kj/vector.h>

namespace runner {

class OutputFiles {
 public:
  // Removes spares a previous server left in `dir` (it crashed), then starts the thread, which
  // keeps `spares` files ready. `dir` must exist.
  explicit OutputFiles(kj::StringPtr dir, size_t spares = 16);
  // Stops the thread and removes the spares.
  ~OutputFiles() noexcept(false);
  KJ_DISALLOW_COPY(OutputFiles);

  // A new, empty <dir>/<id>.log, mode 0640 (before the umask), open for appending and
  // close-on-exec. Throws "cannot create the output file PATH: REASON" when it exists or cannot
  // be made.
  // Runs on the calling thread, and may wait for the disk.
  kj::AutoCloseFd create(kj::StringPtr id);

  // Removes the output files in the directory that are named as runnerd names them
  // (<uuid>.log, regular files) but whose id `isKnown` does not accept: a previous server made
  // them for jobs it never recorded (it crashed while starting them). Returns their ids.
  kj::Array<kj::String> removeUnknown(kj::FunctionParam<bool(kj::StringPtr id)> isKnown);
  // create() on the thread, for the event loop: resolves with the file, or rejects with what
  // create() throws. Call on the thread that owns the event loop.
  kj::Promise<kj::AutoCloseFd> createOnThread(kj::StringPtr id);

  // Removes <dir>/<id>.log on the thread, after every create and removal asked before; a file
  // that is not there is no error.
  void removeOnThread(kj::StringPtr id);
  // removeOnThread(), for a caller that must know when the file is gone: resolves then (also
  // when it was not there; a file that cannot be removed is logged).
  kj::Promise<void> removeOnThreadAndWait(kj::StringPtr id);

  // Gives back, on the thread, the blocks allocated past the end of the output file open as
  // `fd` (fallocate with FALLOC_FL_KEEP_SIZE), then closes it.
  void releaseBlocksOnThread(kj::AutoCloseFd fd);

  // Requests queued and not yet taken by the thread.
  size_t backlog() const;

  // Files ready now (for tests).
  size_t ready() const;

 private:
  // A file to make (with whom to tell) or, without that fulfiller, to remove (with whom to tell,
  // if anyone); or, with `shrink`, an open file whose blocks past its end to give back.
  struct Request {
    kj::String id;
    kj::Maybe<kj::Own<kj::CrossThreadPromiseFulfiller<kj::AutoCloseFd>>> created;
    kj::AutoCloseFd shrink;
    kj::Maybe<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> removed = nullptr;
  };

  struct State {
    // Asked by the event loop, oldest first; served before spares are made.
    kj::Vector<Request> requests;
    // Names of empty files in dir, made but not open.
    kj::Vector<kj::String> spares;
    // Set by create(); the thread refills only after a start took a spare, so a directory where
    // making files fails does not keep it busy.
    bool wanted = true;
    bool stopping = false;
  };

  kj::String dir;
  kj::AutoCloseFd dirFd;
  size_t target;
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  // The thread: serves requests and keeps spares ready.
  void serve();
  void handle(Request& request);
  void removeLeftovers();
  [[noreturn]] void failCreate(kj::StringPtr name, int error);
};

}  // namespace runner

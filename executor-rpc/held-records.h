#pragma once
// HeldRecords: runner-supervisor's record on disk of each job it holds, one small file per job in
// <state-dir>/supervisor/held/ (schema/held-job.capnp), and the thread that writes them.
//
// A job's record is written before its executor launches it, so that nothing runs that no record
// names; rewritten once it runs with what finds its processes again (executors::JobTrace);
// rewritten with its end when it ends; removed once that end is acknowledged. The next supervisor
// reads them (see ExecutorService::recover()). They must survive the supervisor's process, not the
// machine: a write appends the new version of the record to its file (the last whole version is
// the record) without a sync. The end is the one fact nothing else keeps until runnerd has it:
// its record is synced by sync(), which the service asks for when runnerd has not taken the end
// (acknowledged it, after runnerd's own synced write) within moments; a record removed first
// is never synced. So a connected runnerd's write is the end's only sync on the path of a job,
// and it does not queue behind one of ours. A file past COMPACT_AT is replaced whole (a new
// file renamed over it).
//
// The event loop never waits for the disk: writes go to one thread, in the order they are asked
// for, and come back as promises.

#include <kj/async.h>
#include <kj/function.h>
#include <kj/io.h>
#include <kj/map.h>
#include <kj/mutex.h>
#include <kj/thread.h>
#include <kj/vector.h>

#include "executors/executor.h"

namespace runner::executor_rpc {

struct HeldRecord {
  enum class State { LAUNCHING, RUNNING, ENDED };

  kj::String jobId;
  kj::String executor;
  // The boot it was launched in (currentBootId()).
  kj::String bootId;
  State state = State::LAUNCHING;
  // Where its processes are; pid 0 while launching.
  executors::JobTrace trace;
  // Its end, when ENDED.
  executors::ExitStatus end;

  HeldRecord clone() const;
};

// /proc/sys/kernel/random/boot_id, without its newline.
kj::String currentBootId();

class HeldRecords {
 public:
  // Opens the directory `dir`, making it when missing (mode 0700). It must be root's and closed to
  // others, and so must its parent: a record says which processes the next supervisor kills.
  // Throws one line otherwise. Starts the thread.
  explicit HeldRecords(kj::StringPtr dir);
  // Writes what is queued (waiting for the disk if it must), then stops the thread.
  ~HeldRecords() noexcept(false);
  KJ_DISALLOW_COPY(HeldRecords);

  kj::StringPtr path() const { return dirPath; }

  // At start-up, before the first write: every record in the directory, read on the calling
  // thread. A file that is not a readable record is reported to `log`, one line each, and left.
  kj::Array<HeldRecord> load(kj::FunctionParam<void(kj::StringPtr line)> log);

  // On the event loop. Each is done on the thread in the order asked, and resolves on the event
  // loop once done; it rejects with one line, naming no path, when it failed.
  kj::Promise<void> write(const HeldRecord& record);
  // As write(), for a record nobody waits for (a job runs, a job ended): nothing comes back to
  // the event loop unless the write fails, and then failed() resolves and takeFailures() hands
  // over its line. Spares the event loop a wake-up for each such record, two on the way of every
  // job.
  void post(const HeldRecord& record);
  // Resolves once a posted write has failed since the last takeFailures(). One caller at a time.
  kj::Promise<void> failed();
  // The lines of the posted writes that failed since the last call.
  kj::Array<kj::String> takeFailures();
  // Writes `record`, which must not be an end, on the calling thread, neither the event loop's nor
  // the records' own: the record of a launch, written by the thread that creates the job's process
  // just before it does (executors::LaunchRequest::beforeStart), so that a start waits for no hand-
  // off to the records' thread and back. Nothing else of that job may be queued until it returns.
  // Throws one line, naming no path. Blocks while the disk does.
  void writeHere(const HeldRecord& record);
  // Removes the record of `jobId` on the calling thread (as writeHere()), if there is one: a
  // launch record written after its launch was given up.
  void removeHere(kj::StringPtr jobId);
  // Syncs the record of `jobId` if its end was written and not synced yet; nothing if the record
  // was removed meanwhile.
  kj::Promise<void> sync(kj::StringPtr jobId);
  kj::Promise<void> remove(kj::StringPtr jobId);

  // Nothing is queued, the thread is not writing, and every end written is synced or removed.
  bool idle() const;

  // Largest record read back, in bytes: a job id, a few cgroup paths and an end.
  static constexpr size_t MAX_RECORD_BYTES = 64 * 1024;
  // Size of a record file past which a write replaces it rather than appends to it.
  static constexpr size_t COMPACT_AT = 16 * 1024;

 private:
  struct Work {
    kj::Function<void()> func;
    // Null for a posted write.
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> done;
  };
  struct State {
    kj::Vector<Work> queue;
    // Lines of posted writes that failed, and failed()'s caller, waiting for one.
    kj::Vector<kj::String> failures;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> failureWaiter;
    bool working = false;
    bool stopping = false;
    // Size of `unsyncedEnds`, for idle().
    size_t unsynced = 0;
  };

  // Jobs whose end record is written and not synced; used on the thread only.
  kj::HashSet<kj::String> unsyncedEnds;

  // Emptied files of removed records (".spare-N"), taken by the next records instead of new
  // files; at most MAX_SPARES, used on the thread and by writeHere(). load() removes those of
  // earlier runs.
  static constexpr size_t MAX_SPARES = 1024;
  struct Spares {
    kj::Vector<kj::String> names;
    uint64_t next = 0;
  };
  kj::MutexGuarded<Spares> spares;

  kj::Maybe<kj::String> takeSpare();
  void append(kj::StringPtr name, kj::ArrayPtr<const kj::byte> bytes);

  kj::String dirPath;
  kj::AutoCloseFd dirFd;
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread;

  kj::Promise<void> queue(kj::Function<void()> func);
  kj::Function<void()> writing(const HeldRecord& record);
  void run();
};

}  // namespace runner::executor_rpc

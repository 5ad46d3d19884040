#pragma once
// A real job table for tests: a temporary log directory and SQLite store, the local executor,
// jobs running as runner-jobs, and an event loop owned by the test.

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <utility>

#include "executors/executor.h"
#include "runner/event-log.h"
#include "runner/job-table.h"
#include "runner/output-watcher.h"
#include "runner/store.h"

namespace runner::testing {

// Why tests that run jobs cannot run here, or nullptr when they can (root, and the
// runner-jobs user exists).
kj::Maybe<kj::String> cannotRunJobs();

// A fresh directory under /var/lib/runner-tests (jobs get a /tmp and /var/tmp of their own),
// readable by jobs, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir() noexcept(false);
  KJ_DISALLOW_COPY(TempDir);
  kj::StringPtr path() const { return dirPath; }

 private:
  kj::String dirPath;
};

class Harness {
 public:
  // `dir` holds logs/ and the store; pass the same one to simulate a restarted server.
  // `retention`, when given, are JobTableConfig's maxStoredPerUser and maxStoredBytesPerUser;
  // `maxStoredBytes` and `maxDiskBacklog`, when not 0, the fields of the same names.
  explicit Harness(TempDir& dir,
                   kj::Maybe<std::pair<uint32_t, uint64_t>> retention = nullptr,
                   uint64_t maxStoredBytes = 0, size_t maxDiskBacklog = 0);
  ~Harness() noexcept(false);

  kj::AsyncIoContext io;
  EventLog log;
  kj::Own<Store> store;
  executors::ExecutorSet executorSet;
  OutputWatcher watcher;
  kj::Own<JobTable> table;

  // Starts `argv` as `owner`.
  Job& start(kj::ArrayPtr<const kj::StringPtr> argv, kj::StringPtr owner = "alice");
  Job& sh(kj::StringPtr script, kj::StringPtr owner = "alice");

  // Runs the event loop until the job has ended.
  void waitEnded(Job& job);

  // The job's whole output file.
  kj::String output(Job& job);
};

}  // namespace runner::testing

#pragma once
// Internal to ExecutorService: a job it holds, and what its two files share (executor-service.c++
// serves the protocol; executor-service-lifecycle.c++ takes jobs over at start-up, stops them, and
// readies the service for an exec).

#include "executor-rpc/executor-service.h"
#include "executor-rpc/executor-wire.h"

namespace runner::executor_rpc {

// A job the service holds: running (with a Process), or ended and not acknowledged (with or
// without one: a job found ended, or lost, at start-up has none). `ended` resolves when its end is
// known, and `end` is set then.
struct ExecutorService::Held {
  kj::String id;
  kj::String executor;
  executors::JobTrace trace;
  kj::Maybe<kj::Own<executors::Process>> process;
  kj::Maybe<executors::ExitStatus> end;
  // Declared after `process`: its branches must not outlive it.
  kj::ForkedPromise<void> ended = nullptr;
  // The sync of its end record, due END_SYNC_DELAY after the end unless it is acknowledged first.
  kj::Promise<void> endSync = nullptr;

  bool running() const { return end == nullptr && process != nullptr; }

  void fillStarted(wire::Started::Builder out) const {
    out.setPid(trace.pid);
    out.setPidStartTime(trace.pidStartTime);
    fillPlacement(out.initPlacement(), trace.placement);
  }
};

// 1 to ExecutorService::MAX_JOB_ID letters, digits, '-' or '_': a job id names a cgroup and a file.
bool isPlainName(kj::StringPtr id);

// An exception whose description is `line`, and nothing else.
kj::Exception oneLine(kj::Exception::Type type, kj::String line);

// "exit=N", "signal=N" or "lost", for the log.
kj::String describeEnd(const executors::ExitStatus& status);

}  // namespace runner::executor_rpc

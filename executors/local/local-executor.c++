#include "executors/local/local-executor.h"

#include <errno.h>
#include <kj/debug.h>
#include <signal.h>

#include "executors/job-process.h"
#include "executors/spawn.h"

namespace runner::executors {
namespace {

// The names of the limits set in `limits`, comma-separated.
kj::String describeLimits(const Limits& limits) {
  kj::Vector<kj::StringPtr> names;
  if (limits.cpuMillicores) names.add("cpu");
  if (limits.memoryBytes) names.add("memory");
  if (limits.ioReadBytesPerSec) names.add("io-read");
  if (limits.ioWriteBytesPerSec) names.add("io-write");
  if (limits.pids) names.add("pids");
  return kj::strArray(names, ", ");
}

}  // namespace

LocalExecutor::LocalExecutor(kj::UnixEventPort& eventPort, kj::Timer& timer,
                             kj::Duration launchTimeout,
                             kj::Maybe<kj::Own<cgroup::CgroupDriver>> tracking)
    : eventPort(eventPort), timer(timer), launchTimeout(launchTimeout) {
  KJ_IF_MAYBE (driver, tracking) {
    tracker = kj::heap<cgroup::CgroupExecutor>(eventPort, timer, kj::mv(*driver), launchTimeout);
  }
}

kj::Array<kj::String> LocalExecutor::sweepLeftovers(
    kj::FunctionParam<bool(kj::StringPtr name)> isOurs) {
  KJ_IF_MAYBE (t, tracker) {
    return (*t)->sweepLeftovers(isOurs);
  }
  return nullptr;
}

kj::Own<Process> LocalExecutor::reattach(const JobTrace& trace) {
  if (trace.cgroupPaths.size() > 0) {
    KJ_IF_MAYBE (t, tracker) {
      return (*t)->reattach(trace);
    }
    KJ_FAIL_REQUIRE("the job was tracked in a cgroup, and this executor cannot track jobs so",
                    trace.pid);
  }
  return kj::heap<JobProcess>(eventPort, trace.pid, openPidfd(trace.pid), trace.pidStartTime,
                              nullptr);
}

kj::Promise<void> LocalExecutor::killRemains(kj::StringPtr jobId, const JobTrace& trace) {
  KJ_IF_MAYBE (t, tracker) {
    return (*t)->killRemains(jobId, trace);
  }
  if (trace.pid > 1) killSessionOf(trace.pid, trace.pidStartTime);
  return kj::READY_NOW;
}

kj::Promise<void> LocalExecutor::drain() {
  KJ_IF_MAYBE (t, tracker) {
    return (*t)->drain();
  }
  return kj::READY_NOW;
}

kj::StringPtr LocalExecutor::name() const {
  return "local";
}

kj::Promise<LaunchResult> LocalExecutor::launch(LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
  if (request.limits.any()) {
    // One line, as runnerd passes it on to the client.
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::UNIMPLEMENTED, __FILE__, __LINE__,
        kj::str("the local executor cannot apply limits; use the cgroup executor (limits asked "
                "for: ",
                describeLimits(request.limits), ")")));
  }

  KJ_IF_MAYBE (t, tracker) {
    return (*t)->launchTracked(kj::mv(request));
  }

  SpawnOptions options{request};
  options.launchTimeout = launchTimeout;
  KJ_IF_MAYBE (first, request.beforeStart) {
    options.beforeStart = [first = kj::mv(*first)]() mutable -> kj::Array<int> {
      first();
      return nullptr;
    };
  }
  return spawn(launcher, timer, kj::mv(options)).then([this](SpawnResult&& result) -> LaunchResult {
    KJ_SWITCH_ONEOF(result) {
      KJ_CASE_ONEOF(spawned, Spawned) {
        auto startTime = processStartTime(spawned.pid).orDefault(0);
        kj::Own<Process> process =
            kj::heap<JobProcess>(eventPort, spawned.pid, kj::mv(spawned.pidfd), startTime, nullptr);
        return kj::mv(process);
      }
      KJ_CASE_ONEOF(failure, LaunchFailure) {
        return kj::mv(failure);
      }
    }
    KJ_UNREACHABLE;
  });
}

}  // namespace runner::executors

#include "executors/local/local-executor.h"

#include <errno.h>
#include <kj/debug.h>
#include <signal.h>

#include "executors/reap.h"
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

// A job started by spawn(): its process group is its pid. The exit is observed once, by a
// promise forked at construction, so onExit() may be called any number of times and the
// process is reaped as soon as the event loop sees the pidfd readable, whether or not anyone
// is waiting.
class LocalProcess final : public Process {
 public:
  LocalProcess(kj::UnixEventPort& eventPort, Spawned spawned)
      : mainPid(spawned.pid),
        pidfd(kj::mv(spawned.pidfd)),
        observer(eventPort, pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
        exited(observer.whenBecomesReadable().then([this]() { return reap(); }).fork()) {}

  ~LocalProcess() noexcept(false) {
    if (reaped) return;
    // The job outlives its owner: kill it all and reap synchronously, so that nothing leaks.
    killGroup(SIGKILL);
    KJ_IF_MAYBE (exception,
                 kj::runCatchingExceptions([&]() { reapExited(pidfd.get(), mainPid); })) {
      KJ_LOG(ERROR, "could not reap a killed job", mainPid, *exception);
    }
  }

  KJ_DISALLOW_COPY(LocalProcess);

  pid_t pid() const override { return mainPid; }

  // Each call returns a new branch of the same exit; branches must not outlive this Process.
  kj::Promise<ExitStatus> onExit() override { return exited.addBranch(); }

  void signalAll(int signal) override {
    if (!reaped) killGroup(signal);
  }

  const Placement& placement() const override { return noPlacement; }

 private:
  pid_t mainPid;
  kj::AutoCloseFd pidfd;
  kj::UnixEventPort::FdObserver observer;
  kj::ForkedPromise<ExitStatus> exited;
  bool reaped = false;
  Placement noPlacement;

  void killGroup(int signal) {
    KJ_SYSCALL_HANDLE_ERRORS(kill(-mainPid, signal)) {
      case ESRCH:
        break;
      default:
        KJ_FAIL_SYSCALL("kill", error, -mainPid, signal);
    }
  }

  ExitStatus reap() {
    // The main process is a zombie: it still holds the process group id, so no other group
    // can have taken it and this reaches exactly what the job left behind.
    killGroup(SIGKILL);

    auto status = reapExited(pidfd.get(), mainPid);
    reaped = true;
    return status;
  }
};

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

kj::StringPtr LocalExecutor::name() const {
  return "local";
}

kj::Promise<LaunchResult> LocalExecutor::launch(LaunchRequest&& request) {
  KJ_REQUIRE(request.argv.size() > 0 && request.argv[0].size() > 0, "empty command");
  if (request.limits.any()) {
    kj::throwFatalException(KJ_EXCEPTION(
        UNIMPLEMENTED, "the local executor cannot apply limits; use the cgroup executor",
        describeLimits(request.limits)));
  }

  KJ_IF_MAYBE (t, tracker) {
    return (*t)->launchTracked(kj::mv(request));
  }

  SpawnOptions options{request};
  options.launchTimeout = launchTimeout;
  return spawn(launcher, timer, options).then([this](SpawnResult&& result) -> LaunchResult {
    KJ_SWITCH_ONEOF(result) {
      KJ_CASE_ONEOF(spawned, Spawned) {
        kj::Own<Process> process = kj::heap<LocalProcess>(eventPort, kj::mv(spawned));
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

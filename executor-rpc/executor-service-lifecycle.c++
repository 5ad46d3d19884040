// ExecutorService across the life of its process: the jobs a previous run left (recover()), a
// stop with a grace (stopAll()), and the quiet an exec needs (quiesce()).

#include <kj/debug.h>
#include <signal.h>

#include "executor-rpc/held-job.h"
#include "executors/job-process.h"

namespace runner::executor_rpc {

kj::Promise<void> ExecutorService::recover(kj::Array<HeldRecord> found) {
  kj::Vector<kj::Promise<void>> kills;
  for (auto& record : found) {
    if (held.find(record.jobId) != nullptr || !isPlainName(record.jobId)) continue;
    auto job = kj::heap<Held>();
    job->id = kj::mv(record.jobId);
    job->executor = kj::mv(record.executor);
    job->trace = kj::mv(record.trace);
    if (record.state == HeldRecord::State::ENDED) {
      log(kj::str("job kept id=", job->id, " ended ", describeEnd(record.end)));
      job->end = kj::mv(record.end);
      job->ended = kj::Promise<void>(kj::READY_NOW).fork();
      hold(kj::mv(job));
      continue;
    }

    auto executor = executors.find(job->executor);
    bool sameBoot = record.bootId == bootId;
    if (record.state == HeldRecord::State::RUNNING && sameBoot &&
        executors::isUnreapedChild(job->trace.pid, job->trace.pidStartTime)) {
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                     job->process = KJ_REQUIRE_NONNULL(executor, "its executor is not served")
                                        .reattach(job->trace);
                   })) {
        log(kj::str("cannot re-attach job id=", job->id, ": ", e->getDescription()));
      } else {
        log(kj::str("re-attached job id=", job->id, " executor=", job->executor,
                    " pid=", job->trace.pid));
        hold(kj::mv(job));
        continue;
      }
    }

    // Its supervisor is gone and nobody watches it: nothing of it may go on running.
    kj::Promise<void> killed = kj::READY_NOW;
    if (sameBoot) {
      killed = kj::evalNow([&]() -> kj::Promise<void> {
                 KJ_IF_MAYBE (e, executor) {
                   return e->killRemains(job->id, job->trace);
                 }
                 if (job->trace.pid > 1) {
                   executors::killSessionOf(job->trace.pid, job->trace.pidStartTime);
                 }
                 KJ_REQUIRE(job->trace.cgroupPaths.size() == 0,
                            "its executor is not served, so its cgroups were left",
                            job->trace.cgroupPaths);
                 return kj::READY_NOW;
               }).catch_([this, id = kj::str(job->id)](kj::Exception&& e) {
        log(kj::str("killing what was left of job id=", id, " failed: ", e.getDescription()));
      });
    }
    executors::ExitStatus lost;
    lost.lost = kj::str(sameBoot ? LOST_WITH_SUPERVISOR : LOST_WITH_MACHINE);
    log(kj::str("job lost id=", job->id, " executor=", job->executor, " pid=", job->trace.pid, ": ",
                lost.lost));
    job->end = kj::mv(lost);
    job->ended = kj::Promise<void>(kj::READY_NOW).fork();
    auto& kept = hold(kj::mv(job));
    // Written once the kill is sent: a supervisor that crashes before kills again.
    kills.add(
        killed
            .then([this, record = recordOf(kept)]() {
              return withinDiskDeadline(
                  records.write(record).then([this, id = kj::str(record.jobId)]() {
                    return records.sync(id);
                  }));
            })
            .catch_([this, id = kj::str(kept.id)](kj::Exception&& e) {
              log(kj::str("cannot record the end of lost job id=", id, ": ", e.getDescription()));
            }));
  }
  return kj::joinPromises(kills.releaseAsArray());
}

kj::Promise<void> ExecutorService::stopAll(kj::Duration grace) {
  stopping = true;
  kj::Vector<kj::Promise<void>> ends;
  for (auto& entry : held) {
    auto& job = *entry.value;
    if (!job.running()) continue;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                        [&]() { KJ_ASSERT_NONNULL(job.process)->signalAll(SIGTERM); })) {
      log(kj::str("cannot stop job id=", job.id, ": ", e->getDescription()));
    }
    ends.add(job.ended.addBranch());
  }
  if (ends.size() > 0) {
    log(kj::str("stopping ", ends.size(), " running jobs: SIGTERM now, SIGKILL in ", grace));
  }
  auto killLate = timer.afterDelay(grace)
                      .exclusiveJoin(kj::mv(hurriedPromise))
                      .then([this]() {
                        for (auto& entry : held) {
                          auto& job = *entry.value;
                          if (!job.running()) continue;
                          log(kj::str("killing job id=", job.id, " (SIGKILL)"));
                          KJ_ASSERT_NONNULL(job.process)->signalAll(SIGKILL);
                        }
                      })
                      .eagerlyEvaluate(nullptr);
  return kj::joinPromises(ends.releaseAsArray()).attach(kj::mv(killLate)).then([this]() {
    return whenRecordsWritten(timer.now() + DISK_DEADLINE);
  });
}

void ExecutorService::hurry() {
  hurried->fulfill();
}

kj::Promise<void> ExecutorService::whenRecordsWritten(kj::TimePoint deadline) {
  if (records.idle()) return kj::READY_NOW;
  if (timer.now() >= deadline) {
    log(kj::str("the held job records in ", records.path(),
                " are not written yet: their disk is not answering"));
    return kj::READY_NOW;
  }
  return timer.afterDelay(5 * kj::MILLISECONDS).then([this, deadline]() {
    return whenRecordsWritten(deadline);
  });
}

kj::Promise<void> ExecutorService::quiesce(kj::Duration deadline) {
  quiescing = true;
  return waitUntilQuiet(timer.now() + deadline);
}

void ExecutorService::resume() {
  quiescing = false;
}

kj::Maybe<kj::String> ExecutorService::busyWith() {
  if (launching.size() > 0) return kj::str(launching.size(), " launches are under way");
  if (launchHooks->count > 0) {
    return kj::str(launchHooks->count, " launches given up are still being undone");
  }
  for (auto& entry : held) {
    auto& job = *entry.value;
    // Reaped, but its end not yet known: after an exec, it would look lost.
    if (job.running() && !executors::isUnreapedChild(job.trace.pid, job.trace.pidStartTime)) {
      return kj::str("job ", job.id, " is ending");
    }
  }
  if (!records.idle()) return kj::str("held job records are being written");
  return nullptr;
}

kj::Promise<void> ExecutorService::waitUntilQuiet(kj::TimePoint deadline) {
  auto drained = KJ_MAP(name, executors.names()) {
    return KJ_ASSERT_NONNULL(executors.find(name)).drain();
  };
  return kj::joinPromises(kj::mv(drained))
      .exclusiveJoin(timer.afterDelay(deadline - timer.now()).then([]() -> kj::Promise<void> {
        return oneLine(kj::Exception::Type::FAILED,
                       kj::str("an executor's cgroups are still being removed"));
      }))
      .then([this, deadline]() -> kj::Promise<void> {
        KJ_IF_MAYBE (busy, busyWith()) {
          if (timer.now() >= deadline) return oneLine(kj::Exception::Type::FAILED, kj::mv(*busy));
          return timer.afterDelay(5 * kj::MILLISECONDS).then([this, deadline]() {
            return waitUntilQuiet(deadline);
          });
        }
        return kj::READY_NOW;
      });
}

}  // namespace runner::executor_rpc

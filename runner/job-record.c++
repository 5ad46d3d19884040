#include "runner/job-record.h"

namespace runner {

namespace {

const kj::StringPtr STATE_NAMES[] = {"running"_kj, "exited"_kj, "killed"_kj,
                                     "stopped"_kj, "failed"_kj, "lost"_kj};

}  // namespace

kj::StringPtr stateName(JobState state) {
  return STATE_NAMES[static_cast<uint>(state)];
}

kj::Maybe<JobState> parseState(kj::StringPtr name) {
  for (uint i = 0; i < kj::size(STATE_NAMES); i++) {
    if (STATE_NAMES[i] == name) return static_cast<JobState>(i);
  }
  return nullptr;
}

namespace {

constexpr kj::StringPtr END_REASON_NAMES[] = {"none"_kj, "stopped"_kj, "timeout"_kj,
                                              "idle-timeout"_kj, "output-limit"_kj};

}  // namespace

kj::StringPtr endReasonName(EndReason reason) {
  return END_REASON_NAMES[static_cast<uint>(reason)];
}

kj::Maybe<EndReason> parseEndReason(kj::StringPtr name) {
  for (auto i : kj::indices(END_REASON_NAMES)) {
    if (END_REASON_NAMES[i] == name) return static_cast<EndReason>(i);
  }
  return nullptr;
}

JobRecord JobRecord::clone() const {
  JobRecord copy;
  copy.id = kj::str(id);
  copy.owner = kj::str(owner);
  copy.command = kj::str(command);
  copy.args = KJ_MAP(arg, args) {
    return kj::str(arg);
  };
  copy.workingDir = kj::str(workingDir);
  copy.executor = kj::str(executor);
  copy.state = state;
  copy.exitCode = exitCode;
  copy.termSignal = termSignal;
  copy.oomKilled = oomKilled;
  copy.oomKilledMain = oomKilledMain;
  copy.error = kj::str(error);
  copy.createdAt = createdAt;
  copy.startedAt = startedAt;
  copy.endedAt = endedAt;
  copy.limits = limits;
  copy.isolation = isolation;
  copy.usage = usage;
  copy.placement = placement.clone();
  copy.pid = pid;
  copy.pidStartTime = pidStartTime;
  copy.uid = uid;
  copy.gid = gid;
  copy.maxOutputBytes = maxOutputBytes;
  copy.outputBytes = outputBytes;
  copy.name = kj::str(name);
  copy.labels = KJ_MAP(label, labels) {
    return JobLabel{kj::str(label.key), kj::str(label.value)};
  };
  copy.timeoutMillis = timeoutMillis;
  copy.idleTimeoutMillis = idleTimeoutMillis;
  copy.endReason = endReason;
  copy.outputTimes = kj::heapArray(outputTimes.asPtr());
  return copy;
}

}  // namespace runner

#include "runner/job-metrics.h"

namespace runner {

namespace {
constexpr kj::StringPtr END_CAUSE_NAMES[] = {"exited"_kj, "killed"_kj, "stopped"_kj,
                                             "failed"_kj, "lost"_kj,   "oom"_kj};
static_assert(kj::size(END_CAUSE_NAMES) == END_CAUSES, "a name for each cause");
}  // namespace

kj::StringPtr endCauseName(EndCause cause) {
  return END_CAUSE_NAMES[static_cast<uint>(cause)];
}

EndCause endCauseOf(const JobRecord& record) {
  if (record.oomKilled) return EndCause::OOM;
  switch (record.state) {
    case JobState::KILLED:
      return EndCause::KILLED;
    case JobState::STOPPED:
      return EndCause::STOPPED;
    case JobState::FAILED:
      return EndCause::FAILED;
    case JobState::LOST:
      return EndCause::LOST;
    case JobState::EXITED:
    case JobState::RUNNING:
      break;
  }
  return EndCause::EXITED;
}

void JobMetrics::count(kj::StringPtr executor, JobState state, int delta) {
  auto& entry = jobs.findOrCreate(executor, [&]() {
    return kj::HashMap<kj::String, ByState>::Entry{kj::str(executor), ByState()};
  });
  entry.count[static_cast<uint>(state)] += delta;
}

}  // namespace runner

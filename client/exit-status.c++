#include "client/exit-status.h"

namespace runner {
namespace client {

int jobExitCode(api::JobInfo::Reader info) {
  switch (info.getState()) {
    case api::State::EXITED:
      return info.getExitCode();
    case api::State::KILLED:
    case api::State::STOPPED:
      if (info.getTermSignal() > 0) return EXIT_SIGNAL_BASE + info.getTermSignal();
      return info.getExitCode();
    case api::State::FAILED:
      return EXIT_CANNOT_START;
    case api::State::LOST:
    case api::State::RUNNING:
      return EXIT_RUNCTL_FAILED;
  }
  return EXIT_RUNCTL_FAILED;
}

}  // namespace client
}  // namespace runner

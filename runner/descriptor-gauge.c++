#include "runner/descriptor-gauge.h"

#include <dirent.h>
#include <sys/resource.h>

namespace runner {

bool DescriptorGauge::nearlyExhausted() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  int64_t elapsedMillis = (now.tv_sec - lastCounted.tv_sec) * 1000 +
                          (now.tv_nsec - lastCounted.tv_nsec) / 1000000;
  if (lastCounted.tv_sec == 0 || elapsedMillis >= 100) {
    lastCounted = now;
    // opendir() takes a descriptor itself: when none is left, that is the answer.
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return true;
    uint64_t count = 0;
    while (readdir(dir) != nullptr) ++count;
    closedir(dir);
    lastCount = count > 2 ? count - 2 : 0;  // "." and ".."
    // The limit may have been changed from outside (prlimit).
    struct rlimit now;
    if (getrlimit(RLIMIT_NOFILE, &now) == 0) limit = now.rlim_cur;
  }
  // A small limit keeps a quarter of itself rather than the whole reserve.
  uint64_t kept = reserve < limit / 4 ? reserve : limit / 4;
  return lastCount + kept > limit;
}

}  // namespace runner

#pragma once
// DescriptorGauge: whether runnerd is close to its descriptor limit.
//
// Each user's descriptors are bounded (connections, watches, running jobs), but several users at
// their bounds together could still take them all, and then accept() fails for everyone. Past
// limit - reserve, runnerd refuses what would take more (a connection, a watch, a start) with an
// error, and keeps the reserve for the work it has already taken on.

#include <stdint.h>
#include <time.h>

namespace runner {

class DescriptorGauge {
 public:
  DescriptorGauge(uint64_t limit, uint64_t reserve) : limit(limit), reserve(reserve) {}

  // Whether more than limit - reserve descriptors are open (limit - limit / 4 when that is less).
  // Counts /proc/self/fd at most once per 100 ms.
  bool nearlyExhausted();

  // Open at the last count, plus what was taken since.
  uint64_t inUse() const { return lastCount; }

  // Counts `n` descriptors about to be taken, until the next count: a burst within 100 ms is
  // seen.
  void taking(uint64_t n) { lastCount += n; }

  uint64_t limit;
  uint64_t reserve;

 private:
  uint64_t lastCount = 0;
  struct timespec lastCounted = {};
};

}  // namespace runner

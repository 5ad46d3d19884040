#pragma once
// OutputTimes: when a job's output arrived, as a bounded index from offsets to times.
//
// runnerd looks at a running job's output file each time it changes (the watch that enforces
// the output limit) and notes its size with the time. Samples are at least one period apart
// (100 ms): writes within a period extend the last sample, so a sample's bytes arrived at its
// time or within the period after it. The index never holds more than MAX_SAMPLES: once full,
// neighbours are merged pairwise and the period doubles, so a long job's times get coarser
// instead of its index growing.

#include <kj/array.h>
#include <kj/vector.h>
#include <stdint.h>

namespace runner {

// The output up to `offset` (exclusive) had arrived by the end of the sampling period that
// begins at `timeMillis` (Unix milliseconds); the bytes after the previous sample's offset
// arrived within that period.
struct OutputSample {
  uint64_t offset = 0;
  int64_t timeMillis = 0;
};

class OutputTimes {
 public:
  static constexpr int64_t PERIOD_MILLIS = 100;
  static constexpr size_t MAX_SAMPLES = 4096;

  OutputTimes() = default;
  // Takes back stored samples (kept as they are, at most MAX_SAMPLES of them).
  explicit OutputTimes(kj::ArrayPtr<const OutputSample> samples);
  KJ_DISALLOW_COPY(OutputTimes);
  OutputTimes(OutputTimes&&) = default;
  OutputTimes& operator=(OutputTimes&&) = default;

  // The output is `size` bytes long at `nowMillis`. A size that did not grow adds nothing.
  void observe(uint64_t size, int64_t nowMillis);

  kj::ArrayPtr<const OutputSample> samples() const { return list.asPtr(); }

  // Samples as stored in the job store: each offset and time as 8 bytes, little-endian.
  static kj::Array<kj::byte> encode(kj::ArrayPtr<const OutputSample> samples);
  static kj::Array<OutputSample> decode(kj::ArrayPtr<const kj::byte> blob);

 private:
  kj::Vector<OutputSample> list;
  int64_t period = PERIOD_MILLIS;
};

}  // namespace runner

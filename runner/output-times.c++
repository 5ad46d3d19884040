#include "runner/output-times.h"

namespace runner {

OutputTimes::OutputTimes(kj::ArrayPtr<const OutputSample> samples) {
  size_t count = kj::min(samples.size(), MAX_SAMPLES);
  list.addAll(samples.slice(samples.size() - count, samples.size()));
}

void OutputTimes::observe(uint64_t size, int64_t nowMillis) {
  if (list.size() > 0) {
    auto& last = list.back();
    if (size <= last.offset) return;
    if (nowMillis < last.timeMillis + period) {
      last.offset = size;
      return;
    }
  } else if (size == 0) {
    return;
  }
  list.add(OutputSample{size, nowMillis});
  if (list.size() < MAX_SAMPLES) return;
  // Full: each pair becomes one sample with the first's time and the second's offset.
  size_t kept = 0;
  for (size_t i = 0; i + 1 < list.size(); i += 2) {
    list[kept++] = OutputSample{list[i + 1].offset, list[i].timeMillis};
  }
  if (list.size() % 2 != 0) list[kept++] = list.back();
  list.resize(kept);
  period *= 2;
}

namespace {

void putLe(kj::byte* out, uint64_t value) {
  for (int i = 0; i < 8; i++) out[i] = kj::byte(value >> (8 * i));
}

uint64_t getLe(const kj::byte* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++) value |= uint64_t(in[i]) << (8 * i);
  return value;
}

}  // namespace

kj::Array<kj::byte> OutputTimes::encode(kj::ArrayPtr<const OutputSample> list) {
  auto blob = kj::heapArray<kj::byte>(list.size() * 16);
  for (size_t i = 0; i < list.size(); i++) {
    putLe(blob.begin() + 16 * i, list[i].offset);
    putLe(blob.begin() + 16 * i + 8, uint64_t(list[i].timeMillis));
  }
  return blob;
}

kj::Array<OutputSample> OutputTimes::decode(kj::ArrayPtr<const kj::byte> blob) {
  // A blob cut short (it never is, but it is data from disk) loses its partial sample.
  size_t count = kj::min(blob.size() / 16, MAX_SAMPLES);
  auto samples = kj::heapArray<OutputSample>(count);
  for (size_t i = 0; i < count; i++) {
    samples[i].offset = getLe(blob.begin() + 16 * i);
    samples[i].timeMillis = int64_t(getLe(blob.begin() + 16 * i + 8));
  }
  return samples;
}

}  // namespace runner

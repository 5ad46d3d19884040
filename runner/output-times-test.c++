#include "runner/output-times.h"

#include <gtest/gtest.h>

namespace runner {
namespace {

TEST(OutputTimes, WritesWithinAPeriodExtendItsSample) {
  OutputTimes times;
  times.observe(0, 1000);
  EXPECT_EQ(times.samples().size(), 0u);
  times.observe(10, 1000);
  times.observe(20, 1050);
  times.observe(30, 1099);
  ASSERT_EQ(times.samples().size(), 1u);
  EXPECT_EQ(times.samples()[0].offset, 30u);
  EXPECT_EQ(times.samples()[0].timeMillis, 1000);
  times.observe(40, 1100);
  ASSERT_EQ(times.samples().size(), 2u);
  EXPECT_EQ(times.samples()[1].offset, 40u);
  EXPECT_EQ(times.samples()[1].timeMillis, 1100);
  // A size that did not grow is no sample.
  times.observe(40, 5000);
  times.observe(35, 6000);
  EXPECT_EQ(times.samples().size(), 2u);
}

TEST(OutputTimes, StaysBoundedAndOrderedHoweverLongTheJobWrites) {
  OutputTimes times;
  // A write every 100 ms for about 11 days.
  constexpr int64_t WRITES = 10'000'000;
  for (int64_t i = 1; i <= WRITES; i++) {
    times.observe(uint64_t(i) * 10, i * 100);
    ASSERT_LE(times.samples().size(), OutputTimes::MAX_SAMPLES);
  }
  auto samples = times.samples();
  EXPECT_GT(samples.size(), OutputTimes::MAX_SAMPLES / 2 - 1);
  for (size_t i = 1; i < samples.size(); i++) {
    EXPECT_GT(samples[i].offset, samples[i - 1].offset);
    EXPECT_GE(samples[i].timeMillis, samples[i - 1].timeMillis);
  }
  // Everything written is covered, and the first byte keeps its time.
  EXPECT_EQ(samples.back().offset, uint64_t(WRITES) * 10);
  EXPECT_EQ(samples.front().timeMillis, 100);
  // Coarser, evenly: every sample spans the same stretch of time.
  int64_t span = samples[1].timeMillis - samples[0].timeMillis;
  EXPECT_GE(span * int64_t(samples.size()), WRITES * 100 - span);
}

TEST(OutputTimes, EncodesAndDecodesSamples) {
  OutputTimes times;
  times.observe(5, -3);
  times.observe(uint64_t(1) << 40, int64_t(1) << 42);
  auto blob = OutputTimes::encode(times.samples());
  EXPECT_EQ(blob.size(), 32u);
  auto back = OutputTimes::decode(blob);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].offset, 5u);
  EXPECT_EQ(back[0].timeMillis, -3);
  EXPECT_EQ(back[1].offset, uint64_t(1) << 40);
  EXPECT_EQ(back[1].timeMillis, int64_t(1) << 42);
  // A blob cut short loses only its partial sample; an empty one is no samples.
  EXPECT_EQ(OutputTimes::decode(blob.slice(0, 20)).size(), 1u);
  EXPECT_EQ(OutputTimes::decode(nullptr).size(), 0u);
}

}  // namespace
}  // namespace runner

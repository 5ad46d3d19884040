#include "runner/metrics.h"

#include <gtest/gtest.h>

namespace runner {
namespace {

TEST(Histogram, CountsEachObservationInTheFirstBucketThatHoldsIt) {
  constexpr double bounds[] = {0.1, 1};
  Histogram h(bounds);
  h.observe(0.1);
  h.observe(0.5);
  h.observe(2 * kj::SECONDS);
  ASSERT_EQ(h.buckets().size(), 3u);
  EXPECT_EQ(h.buckets()[0], 1u);
  EXPECT_EQ(h.buckets()[1], 1u);
  EXPECT_EQ(h.buckets()[2], 1u);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_DOUBLE_EQ(h.sum(), 2.6);
}

TEST(Exposition, WritesFamiliesWithCumulativeBucketsAndEscapedLabels) {
  constexpr double bounds[] = {0.5};
  Histogram h(bounds);
  h.observe(0.25);
  h.observe(4);
  Exposition out;
  out.family("runner_owner_running_jobs", "gauge", "Running jobs \\ per owner.");
  out.sample("runner_owner_running_jobs", {{"owner", "a\"b\\c\nd"}}, 2);
  out.histogram("runner_x_seconds", "X.", h);
  EXPECT_EQ(out.finish(),
            "# HELP runner_owner_running_jobs Running jobs \\\\ per owner.\n"
            "# TYPE runner_owner_running_jobs gauge\n"
            "runner_owner_running_jobs{owner=\"a\\\"b\\\\c\\nd\"} 2\n"
            "# HELP runner_x_seconds X.\n"
            "# TYPE runner_x_seconds histogram\n"
            "runner_x_seconds_bucket{le=\"0.5\"} 1\n"
            "runner_x_seconds_bucket{le=\"+Inf\"} 2\n"
            "runner_x_seconds_sum 4.25\n"
            "runner_x_seconds_count 2\n");
}

}  // namespace
}  // namespace runner

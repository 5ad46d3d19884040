#pragma once
// Metrics: histograms, and the Prometheus text exposition format (version 0.0.4) that
// `runnerd --metrics-listen` serves.
//
// Counters and gauges are plain integers kept by what they count, on the event loop's thread;
// a Histogram is a plain value too, kept under its owner's lock when another thread observes it.
// Exposition writes them out when scraped.

#include <kj/array.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/vector.h>
#include <stdint.h>

#include <initializer_list>

namespace runner {

// Upper bounds, in seconds, of the buckets of the histograms runnerd keeps.
constexpr double START_LATENCY_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};
constexpr double STORE_LATENCY_BOUNDS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                           1,      2.5,     5,      10};

// A distribution of observations in fixed buckets, with their count and sum.
class Histogram {
 public:
  // `bounds`: ascending upper bounds (a static array: it is not copied); the last bucket, +Inf,
  // is implied.
  explicit Histogram(kj::ArrayPtr<const double> bounds);

  void observe(double value);
  void observe(kj::Duration duration) { observe(double(duration / kj::NANOSECONDS) / 1e9); }

  kj::ArrayPtr<const double> bounds() const { return bucketBounds; }
  // Observations in each bucket (not cumulative); one more than bounds(), the last for +Inf.
  kj::ArrayPtr<const uint64_t> buckets() const { return counts; }
  uint64_t count() const { return total; }
  double sum() const { return valueSum; }

  Histogram clone() const;

 private:
  kj::ArrayPtr<const double> bucketBounds;
  kj::Array<uint64_t> counts;
  uint64_t total = 0;
  double valueSum = 0;
};

// Builds a scrape's text in the Prometheus text exposition format 0.0.4: each family's HELP and
// TYPE lines, then its samples. Label values are escaped as the format asks (`\\`, `\"`, `\n`),
// so any text may be a label value.
class Exposition {
 public:
  struct Label {
    kj::StringPtr name;
    kj::StringPtr value;
  };

  // Starts a family. `type` is counter, gauge or histogram.
  void family(kj::StringPtr name, kj::StringPtr type, kj::StringPtr help);

  void sample(kj::StringPtr name, std::initializer_list<Label> labels, double value);
  void sample(kj::StringPtr name, kj::ArrayPtr<const Label> labels, double value);

  // A whole histogram family: its HELP and TYPE lines, cumulative buckets, sum and count.
  void histogram(kj::StringPtr name, kj::StringPtr help, const Histogram& histogram);

  kj::String finish();

 private:
  kj::Vector<char> text;

  void append(kj::StringPtr s) { text.addAll(s); }
  void appendValue(double value);
};

// The Content-Type of Exposition's text.
constexpr kj::StringPtr EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"_kj;

}  // namespace runner

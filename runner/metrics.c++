#include "runner/metrics.h"

#include <kj/debug.h>
#include <math.h>
#include <stdio.h>

namespace runner {

Histogram::Histogram(kj::ArrayPtr<const double> bounds)
    : bucketBounds(bounds), counts(kj::heapArray<uint64_t>(bounds.size() + 1)) {
  for (auto& c : counts) c = 0;
}

void Histogram::observe(double value) {
  // A dozen bounds: a linear scan is as fast as anything.
  size_t i = 0;
  while (i < bucketBounds.size() && value > bucketBounds[i]) ++i;
  ++counts[i];
  ++total;
  valueSum += value;
}

Histogram Histogram::clone() const {
  Histogram copy(bucketBounds);
  for (auto i : kj::indices(counts)) copy.counts[i] = counts[i];
  copy.total = total;
  copy.valueSum = valueSum;
  return copy;
}

void Exposition::family(kj::StringPtr name, kj::StringPtr type, kj::StringPtr help) {
  // HELP text escapes `\` and newlines; runnerd's own texts have neither.
  append("# HELP ");
  append(name);
  text.add(' ');
  for (char c : help) {
    if (c == '\\') {
      append("\\\\");
    } else if (c == '\n') {
      append("\\n");
    } else {
      text.add(c);
    }
  }
  append("\n# TYPE ");
  append(name);
  text.add(' ');
  append(type);
  text.add('\n');
}

void Exposition::sample(kj::StringPtr name, std::initializer_list<Label> labels, double value) {
  sample(name, kj::arrayPtr(labels.begin(), labels.size()), value);
}

void Exposition::sample(kj::StringPtr name, kj::ArrayPtr<const Label> labels, double value) {
  append(name);
  if (labels.size() > 0) {
    text.add('{');
    for (auto i : kj::indices(labels)) {
      if (i > 0) text.add(',');
      append(labels[i].name);
      append("=\"");
      for (char c : labels[i].value) {
        switch (c) {
          case '\\':
            append("\\\\");
            break;
          case '"':
            append("\\\"");
            break;
          case '\n':
            append("\\n");
            break;
          default:
            text.add(c);
        }
      }
      text.add('"');
    }
    text.add('}');
  }
  text.add(' ');
  appendValue(value);
  text.add('\n');
}

void Exposition::histogram(kj::StringPtr name, kj::StringPtr help, const Histogram& histogram) {
  family(name, "histogram", help);
  auto bucket = kj::str(name, "_bucket");
  uint64_t cumulative = 0;
  auto buckets = histogram.buckets();
  auto bounds = histogram.bounds();
  char bound[32];
  for (auto i : kj::indices(bounds)) {
    cumulative += buckets[i];
    snprintf(bound, sizeof(bound), "%g", bounds[i]);
    sample(bucket, {{"le", bound}}, double(cumulative));
  }
  sample(bucket, {{"le", "+Inf"}}, double(histogram.count()));
  sample(kj::str(name, "_sum"), {}, histogram.sum());
  sample(kj::str(name, "_count"), {}, double(histogram.count()));
}

void Exposition::appendValue(double value) {
  if (isnan(value)) {
    append("NaN");
  } else if (isinf(value)) {
    append(value > 0 ? "+Inf" : "-Inf");
  } else if (value == double(int64_t(value)) && fabs(value) < 1e18) {
    // Counts print as integers.
    append(kj::str(int64_t(value)));
  } else {
    char buffer[32];
    snprintf(buffer, sizeof(buffer), "%.17g", value);
    append(buffer);
  }
}

kj::String Exposition::finish() {
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

}  // namespace runner

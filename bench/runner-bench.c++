// runner-bench: the benchmark programs that scripts/bench runs against a running runnerd.
//
//   runner-bench BENCHMARK [--name=value...] [-- COMMAND...]
//
// Each prints one JSON object with its figures on stdout.

#include <kj/debug.h>
#include <kj/vector.h>
#include <stdio.h>

#include "bench/benchmarks.h"
#include "tls/tls-config.h"

namespace {

struct Benchmark {
  const char* name;
  int (*run)(const runner::bench::Options&);
  // Not a benchmark but what one runs (as a job, over ssh): left out of the usage.
  bool helper = false;
};

const Benchmark BENCHMARKS[] = {
    {"spawn-reference", runner::bench::spawnReference},
    {"exec-times", runner::bench::execTimes},
    {"start-latency", runner::bench::startLatency},
    {"start-rate", runner::bench::startRate},
    {"prepare-output", runner::bench::prepareOutput},
    {"follow-one", runner::bench::followOne},
    {"follow-many", runner::bench::followMany},
    {"stalled-reader", runner::bench::stalledReader},
    {"tls-floor", runner::bench::tlsFloor},
    {"line-latency", runner::bench::lineLatency},
    {"line-writer", runner::bench::lineWriter, true},
};

}  // namespace

int main(int argc, char* argv[]) {
  // As runctl does.
  runner::tls::tuneAllocatorForStreaming();
  if (argc < 2) {
    fprintf(stderr, "usage: runner-bench BENCHMARK [--name=value...] [-- COMMAND...]\n");
    for (auto& benchmark : BENCHMARKS) {
      if (!benchmark.helper) fprintf(stderr, "  %s\n", benchmark.name);
    }
    return 2;
  }
  kj::StringPtr name = argv[1];
  kj::Vector<kj::StringPtr> args;
  for (int i = 2; i < argc; i++) args.add(argv[i]);
  for (auto& benchmark : BENCHMARKS) {
    if (name != benchmark.name) continue;
    int status = 1;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   status = benchmark.run(runner::bench::Options(args));
                 })) {
      fprintf(stderr, "runner-bench %s: %s\n", name.cStr(), e->getDescription().cStr());
      return 1;
    }
    return status;
  }
  fprintf(stderr, "runner-bench: unknown benchmark %s\n", name.cStr());
  return 2;
}

// Starting jobs: the latency of one start over an open connection (P1, P6), the sustained rate
// of short jobs and the latency of `list` over many stored jobs (P5).

#include <kj/debug.h>
#include <stdio.h>

#include "bench/benchmarks.h"

namespace runner {
namespace bench {

namespace {

// Starts /bin/true and, pipelined on the job start() returns, waits for its end.
capnp::RemotePromise<api::Job::WaitResults> startTrue(api::JobManager::Client& manager,
                                                      kj::StringPtr executor) {
  auto request = manager.startRequest();
  auto spec = request.initSpec();
  spec.setCommand("/bin/true");
  if (executor.size() > 0) spec.setExecutor(executor);
  return request.send().getJob().waitRequest().send();
}

// Keeps `window` start+wait chains going until `total` jobs have ended.
struct RateRun {
  api::JobManager::Client& manager;
  uint64_t total;
  uint64_t launched = 0;
  uint64_t ended = 0;

  kj::Promise<void> next() {
    if (launched == total) return kj::READY_NOW;
    ++launched;
    return startTrue(manager, nullptr).then([this](capnp::Response<api::Job::WaitResults>&& r) {
      requireExited(r.getInfo());
      ++ended;
      return next();
    });
  }
};

}  // namespace

int startLatency(const Options& options) {
  auto runs = options.getNumber("runs", 2000);
  auto executor = options.get("executor", "");
  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  // A second figure measured in the same run, one start each in turn, so that both see the same
  // host from moment to moment (their ratio is the point): --other-server, a second runnerd, and
  // --other-executor, another executor (of the other runnerd, or of this one).
  kj::Maybe<kj::Own<Connection>> otherConnection;
  if (options.has("other-server")) {
    otherConnection = kj::heap<Connection>(io, options, options.get("other-server"));
  }
  bool compare = options.has("other-server") || options.has("other-executor");
  auto otherExecutor = options.get("other-executor", executor);
  api::JobManager::Client* otherManager = &connection.manager;
  KJ_IF_MAYBE (c, otherConnection) {
    otherManager = &(*c)->manager;
  }
  for (int i = 0; i < 50; i++) {
    startTrue(connection.manager, executor).wait(io.waitScope);
    if (compare) startTrue(*otherManager, otherExecutor).wait(io.waitScope);
  }

  Samples samples;
  Samples otherSamples;
  auto timeOne = [&](api::JobManager::Client& manager, kj::StringPtr executor, Samples& into) {
    double begin = now();
    auto response = startTrue(manager, executor).wait(io.waitScope);
    into.add(now() - begin);
    requireExited(response.getInfo());
  };
  for (uint64_t i = 0; i < runs; i++) {
    // Which goes first alternates too.
    if (compare && i % 2 == 1) timeOne(*otherManager, otherExecutor, otherSamples);
    timeOne(connection.manager, executor, samples);
    if (compare && i % 2 == 0) timeOne(*otherManager, otherExecutor, otherSamples);
  }
  // The floor under every start: one RPC round trip over the same connection.
  Samples roundTrips;
  for (uint64_t i = 0; i < runs; i++) {
    double begin = now();
    connection.manager.whoamiRequest().send().wait(io.waitScope);
    roundTrips.add(now() - begin);
  }
  JsonObject out;
  out.add("runs", runs);
  out.add("executor", executor);
  out.add("p50_us", samples.percentile(50) * 1e6);
  out.add("p99_us", samples.percentile(99) * 1e6);
  out.add("rpc_p50_us", roundTrips.percentile(50) * 1e6);
  if (compare) {
    out.add("other_executor", otherExecutor);
    out.add("other_p50_us", otherSamples.percentile(50) * 1e6);
    out.add("other_p99_us", otherSamples.percentile(99) * 1e6);
  }
  printf("%s\n", out.toString().cStr());
  return 0;
}

int startRate(const Options& options) {
  auto jobs = options.getNumber("jobs", 10000);
  auto window = options.getNumber("window", 32);
  auto listRuns = options.getNumber("list-runs", 20);
  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  // --other-server: a second runnerd measured in the same run, in turns of a tenth of the jobs
  // each (--chunks), so that both rates see the same host from minute to minute.
  kj::Maybe<kj::Own<Connection>> other;
  if (options.has("other-server")) {
    other = kj::heap<Connection>(io, options, options.get("other-server"));
  }
  uint64_t chunks = other == nullptr ? 1 : kj::max(options.getNumber("chunks", 10), uint64_t(1));

  // Seconds `count` jobs took, `window` at a time.
  auto timeJobs = [&](api::JobManager::Client& manager, uint64_t count) {
    RateRun run{manager, count};
    kj::Vector<kj::Promise<void>> chains;
    double begin = now();
    for (uint64_t i = 0; i < window; i++) chains.add(run.next());
    kj::joinPromises(chains.releaseAsArray()).wait(io.waitScope);
    KJ_ASSERT(run.ended == count);
    return now() - begin;
  };
  double elapsed = 0;
  double otherElapsed = 0;
  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t count = jobs / chunks + (c < jobs % chunks ? 1 : 0);
    KJ_IF_MAYBE (o, other) {
      // Which goes first alternates too.
      if (c % 2 == 1) otherElapsed += timeJobs((*o)->manager, count);
      elapsed += timeJobs(connection.manager, count);
      if (c % 2 == 0) otherElapsed += timeJobs((*o)->manager, count);
    } else {
      elapsed += timeJobs(connection.manager, count);
    }
  }

  Samples listing;
  uint64_t listed = 0;
  for (uint64_t i = 0; i < listRuns; i++) {
    // Every page, as runctl list --all reads them.
    double listBegin = now();
    listed = 0;
    kj::String after;
    do {
      auto request = connection.manager.listRequest();
      auto filter = request.initFilter();
      filter.setAllUsers(true);
      filter.setAfter(after);
      auto response = request.send().wait(io.waitScope);
      listed += response.getJobs().size();
      after = kj::str(response.getNext());
    } while (after.size() > 0);
    listing.add(now() - listBegin);
  }

  JsonObject out;
  out.add("jobs", jobs);
  out.add("window", window);
  out.add("jobs_per_s", jobs / elapsed);
  if (other != nullptr) {
    out.add("chunks", chunks);
    out.add("other_jobs_per_s", jobs / otherElapsed);
  }
  out.add("listed", listed);
  out.add("list_p50_ms", listing.percentile(50) * 1e3);
  out.add("list_max_ms", listing.percentile(100) * 1e3);
  printf("%s\n", out.toString().cStr());
  return 0;
}

}  // namespace bench
}  // namespace runner

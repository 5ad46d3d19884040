#pragma once
// What runnerd's metrics endpoint shows (see runner/metrics-http.h): the scrape's text, made from
// what the job table, the store writer, the server and the supervisor's connection keep, and
// whether runnerd is healthy. Every figure is kept as it changes, so a scrape costs the number of
// executors, owners with running jobs and histogram buckets, never the number of stored jobs.

#include <kj/string.h>

#include "executor-rpc/remote-executor.h"
#include "runner/descriptor-gauge.h"
#include "runner/job-table.h"
#include "runner/metrics-http.h"
#include "runner/server.h"

namespace runner {

// /healthz fails once the oldest write of the state store has waited this long.
constexpr kj::Duration HEALTHY_STORE_WAIT = 5 * kj::SECONDS;

struct MetricsSources {
  const JobTable& table;
  const Server& server;
  // The connections to the processes that run jobs (the supervisor, --executor-socket): each must
  // be up for runnerd to be healthy.
  kj::ArrayPtr<const kj::Own<executor_rpc::ExecutorConnection>> executorConnections;
  DescriptorGauge& descriptors;
  kj::Maybe<const MetricsHttp&> http;
};

// The scrape, in the Prometheus text format 0.0.4.
kj::String renderMetrics(MetricsSources& sources);

// Why runnerd is unhealthy, in one line, or nullptr: the state store commits (no write has
// waited HEALTHY_STORE_WAIT) and every executor connection is up.
kj::Maybe<kj::String> unhealthyReason(MetricsSources& sources);

}  // namespace runner

#include "runner/service-metrics.h"

#include <stdio.h>
#include <unistd.h>

#include "runner/metrics.h"

namespace runner {

namespace {

// Resident memory in bytes, from /proc/self/statm (a read of procfs: no disk).
uint64_t residentBytes() {
  FILE* file = fopen("/proc/self/statm", "re");
  if (file == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  int n = fscanf(file, "%llu %llu", &size, &resident);
  fclose(file);
  return n == 2 ? resident * uint64_t(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

kj::String renderMetrics(MetricsSources& sources) {
  Exposition out;
  auto& jobs = sources.table.metrics();

  out.family("runner_jobs", "gauge",
             "Jobs runnerd keeps (running, and the ended ones retention keeps), by state and "
             "executor.");
  for (auto& entry : jobs.jobs) {
    for (uint state = 0; state < JOB_STATES; state++) {
      out.sample("runner_jobs",
                 {{"state", stateName(static_cast<JobState>(state))}, {"executor", entry.key}},
                 double(entry.value.count[state]));
    }
  }
  out.family("runner_job_starts_total", "counter",
             "Jobs started by this runnerd (starts that failed included), by executor.");
  for (auto& entry : jobs.starts) {
    out.sample("runner_job_starts_total", {{"executor", entry.key}}, double(entry.value));
  }
  out.family("runner_job_ends_total", "counter",
             "Jobs ended since runnerd started, by cause: the end state (exited, killed, stopped, "
             "failed, lost), or oom when the kernel's OOM killer killed a process of the job.");
  for (uint cause = 0; cause < END_CAUSES; cause++) {
    out.sample("runner_job_ends_total", {{"cause", endCauseName(static_cast<EndCause>(cause))}},
               double(jobs.ends[cause]));
  }
  out.histogram("runner_job_start_duration_seconds",
                "From a start request to its job running with its record on disk.",
                jobs.startLatency);
  out.family("runner_owner_running_jobs", "gauge",
             "Running (or starting) jobs of each owner that has any.");
  for (auto& entry : sources.table.runningByOwner()) {
    out.sample("runner_owner_running_jobs", {{"owner", entry.key}}, double(entry.value));
  }
  out.family("runner_followers", "gauge",
             "Output readers at work (logs, logs -f, run), each streaming a job's output.");
  out.sample("runner_followers", {}, double(jobs.followers));
  out.family("runner_follower_bytes_total", "counter", "Output bytes streamed to followers.");
  out.sample("runner_follower_bytes_total", {}, double(jobs.followerBytes));

  auto& server = sources.server.metrics();
  out.family("runner_connections", "gauge", "Authenticated client connections open.");
  out.sample("runner_connections", {}, double(sources.server.openConnections()));
  out.family("runner_connections_accepted_total", "counter",
             "TCP connections accepted on the TLS port.");
  out.sample("runner_connections_accepted_total", {}, double(server.accepted));
  out.family("runner_connections_refused_total", "counter",
             "Connections closed before being served, by reason.");
  for (uint i = 0; i < CONNECTION_REFUSALS; i++) {
    out.sample("runner_connections_refused_total",
               {{"reason", refusalName(static_cast<ConnectionRefusal>(i))}},
               double(server.connectionsRefused[i]));
  }
  out.family("runner_tls_handshakes_in_progress", "gauge", "TLS handshakes under way.");
  out.sample("runner_tls_handshakes_in_progress", {},
             double(sources.server.handshakesInProgress()));
  out.family("runner_tls_handshakes_refused_total", "counter",
             "TLS handshakes that failed, by reason (evicted: dropped to make room for others).");
  for (uint i = 0; i < tls::HANDSHAKE_REFUSALS; i++) {
    out.sample("runner_tls_handshakes_refused_total",
               {{"reason", tls::refusalName(static_cast<tls::HandshakeRefusal>(i))}},
               double(server.handshakesRefused[i]));
  }
  out.sample("runner_tls_handshakes_refused_total", {{"reason", "evicted"}},
             double(server.handshakesRefused[ServerMetrics::EVICTED_HANDSHAKE]));

  out.histogram("runner_store_commit_duration_seconds",
                "Time to apply and commit (sync included) one transaction of the state store.",
                sources.table.storeLatency());
  out.family("runner_store_backlog", "gauge", "State store writes queued, not yet taken.");
  out.sample("runner_store_backlog", {}, double(sources.table.storeBacklog()));
  out.family("runner_executor_connections_up", "gauge",
             "Connections to the processes that run jobs (the supervisor) that are up.");
  size_t up = 0;
  for (auto& connection : sources.executorConnections) up += connection->connected();
  out.sample("runner_executor_connections_up", {}, double(up));
  out.family("runner_executor_connections", "gauge",
             "Connections to the processes that run jobs (the supervisor), up or not.");
  out.sample("runner_executor_connections", {}, double(sources.executorConnections.size()));

  KJ_IF_MAYBE (http, sources.http) {
    out.family("runner_metrics_connections_refused_total", "counter",
               "Connections to the metrics listener closed at once: too many were open.");
    out.sample("runner_metrics_connections_refused_total", {}, double(http->refusedConnections()));
  }

  sources.descriptors.nearlyExhausted();  // counts /proc/self/fd at most every 100 ms
  out.family("runner_process_open_fds", "gauge", "Descriptors runnerd has open.");
  out.sample("runner_process_open_fds", {}, double(sources.descriptors.inUse()));
  out.family("runner_process_max_fds", "gauge", "runnerd's descriptor limit.");
  out.sample("runner_process_max_fds", {}, double(sources.descriptors.limit));
  out.family("runner_process_resident_memory_bytes", "gauge", "runnerd's resident memory.");
  out.sample("runner_process_resident_memory_bytes", {}, double(residentBytes()));
  return out.finish();
}

kj::Maybe<kj::String> unhealthyReason(MetricsSources& sources) {
  KJ_IF_MAYBE (waited, sources.table.storeWaiting()) {
    if (*waited >= HEALTHY_STORE_WAIT) {
      return kj::str("the state store is not answering: a write has waited ",
                     *waited / kj::MILLISECONDS / 1000, " s (its disk is frozen or failing)");
    }
  }
  for (auto& connection : sources.executorConnections) {
    if (!connection->connected()) {
      return kj::str(
          "the supervisor (the process that runs the jobs) is not connected; runnerd "
          "is connecting again");
    }
  }
  return nullptr;
}

}  // namespace runner

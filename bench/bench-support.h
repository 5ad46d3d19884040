#pragma once
// What every benchmark program needs: its options, a monotonic clock, percentiles, a JSON
// object to print its figures, a mutual-TLS connection to runnerd, a follower of a job's
// output, and runnerd's memory as /proc reports it.

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <sys/types.h>

#include "schema/runner.capnp.h"
#include "client/connection.h"

namespace runner {
namespace bench {

// `--name=value` options, and the words after `--` (a command to run).
class Options {
 public:
  Options(kj::ArrayPtr<const kj::StringPtr> args);

  kj::StringPtr get(kj::StringPtr name) const;
  kj::StringPtr get(kj::StringPtr name, kj::StringPtr defaultValue) const;
  uint64_t getNumber(kj::StringPtr name, uint64_t defaultValue) const;
  bool has(kj::StringPtr name) const;
  kj::ArrayPtr<const kj::StringPtr> command() const { return rest; }

 private:
  kj::HashMap<kj::String, kj::String> values;
  kj::ArrayPtr<const kj::StringPtr> rest;
};

// Seconds on CLOCK_MONOTONIC, comparable between processes.
double now();

// Latency samples, in seconds.
class Samples {
 public:
  void add(double seconds) { values.add(seconds); }
  size_t size() const { return values.size(); }
  // The p-th percentile (0 < p <= 100), nearest rank.
  double percentile(double p);
  double mean() const;
  double min();

 private:
  kj::Vector<double> values;
  bool sorted = false;
  void sort();
};

// One flat JSON object, printed on one line.
class JsonObject {
 public:
  void add(kj::StringPtr key, double value);
  void add(kj::StringPtr key, uint64_t value);
  void add(kj::StringPtr key, kj::StringPtr value);
  kj::String toString() const;

 private:
  kj::Vector<kj::String> members;
};

// A mutual-TLS RPC connection to runnerd, from --server, --cert, --key and --ca, made the way
// runctl makes it.
class Connection {
 public:
  Connection(kj::AsyncIoContext& io, const Options& options);
  // To `server` (HOST:PORT) instead of --server, with the same certificates.
  Connection(kj::AsyncIoContext& io, const Options& options, kj::StringPtr address);
  KJ_DISALLOW_COPY(Connection);

  api::JobManager::Client manager = nullptr;

 private:
  kj::Own<client::ServerConnection> server;
};

// Watches `job`'s output from byte 0 and hands each piece to `received` as it arrives; resolves
// when the server has called end(). Holds the subscription until then.
kj::Promise<void> watchToEnd(api::Job::Client job, bool follow,
                             kj::Function<void(kj::ArrayPtr<const kj::byte>)> received);
// The same, adding the size of each piece to `bytes`.
kj::Promise<void> watchToEnd(api::Job::Client job, bool follow, uint64_t& bytes);

// runnerd's memory from /proc/PID/status, in KiB.
struct Memory {
  uint64_t rssKib;
  uint64_t hwmKib;
};
Memory readMemory(pid_t pid);
// Resets the peak (VmHWM) to the current resident size (writes 5 to /proc/PID/clear_refs).
void resetPeakMemory(pid_t pid);

// CPU time (user + system) in seconds: of process `pid` so far (/proc/PID/stat), of this
// process so far, and of a job as runnerd reports it.
double processCpuSeconds(pid_t pid);
double ownCpuSeconds();
double jobCpuSeconds(api::JobInfo::Reader info);

// Throws unless the job ended by exiting with `exitCode`.
void requireExited(api::JobInfo::Reader info, int exitCode = 0);

}  // namespace bench
}  // namespace runner

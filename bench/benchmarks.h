#pragma once
// The benchmarks runner-bench runs. Each takes its options, prints one JSON object with its
// figures on stdout, and returns the process's exit code.

#include "bench/bench-support.h"

namespace runner {
namespace bench {

// Reference of P1: posix_spawn + waitpid of /bin/true in a loop (--runs); and what one
// hand-off to another process costs here (half a pipe round trip with a child, p50).
int spawnReference(const Options& options);

// Runs the command after `--` --runs times (fork, exec, wait; stdout to /dev/null) and reports
// its wall time; with --bytes, also the throughput. References of P2 and P3, and P2 itself.
int execTimes(const Options& options);

// P1 and P6: start /bin/true and wait for it (pipelined, one round trip), --runs times over one
// open connection, on --executor (the server's default when empty).
int startLatency(const Options& options);

// P5: --jobs short jobs, --window of them in flight over one connection, each started and
// waited for; then the latency of `list` over every user's jobs, --list-runs times.
int startRate(const Options& options);

// Starts a job that writes --bytes zero bytes, waits for it, prints its id and output path.
int prepareOutput(const Options& options);

// P3: one follower reads the whole output of job --job (already ended), --runs times; and,
// with --live-bytes, a follower of a job started with it that writes that many bytes,
// --live-runs times. With --server-pid, the CPU runnerd spent on each; with --alone-dir, each
// live run is followed by the same writer alone, appending to a file of that directory. The
// client's CPU and the writer's (as runnerd reports it) are measured too.
int followOne(const Options& options);

// P4: --followers followers of job --job (already ended), spread over --clients processes
// (one connection each); aggregate throughput and the growth of runnerd's (--server-pid)
// peak resident memory.
int followMany(const Options& options);

// P4b: starts a job that writes --bytes and follows it with a client that stops reading; once
// the output is complete (its file in --log-dir has every byte), the growth of runnerd's peak
// resident memory.
int stalledReader(const Options& options);

// P7: a line-writer job writes a stamped line every --interval-ms (10), --lines of them after
// --warmup more; a follower records each line's arrival minus its stamp. --via=runner follows
// it over runner, with --others (0) other jobs writing a line every --others-interval-ms (100),
// each followed, over --others-connections (10) connections of another process; --via=tail
// reads `tail -f` of a file in --dir that the writer appends to; --via=command runs the command
// after `--` (ssh HOST RUNNER-BENCH) with the writer's arguments appended and reads its stdout.
int lineLatency(const Options& options);

// The writer of P7: writes --lines lines of 64 bytes to stdout, one every --interval-ms after
// --delay-ms, each "SEQUENCE CLOCK_MONOTONIC_NANOSECONDS" padded with '.'.
int lineWriter(const Options& options);

// The floor under P3 and P4: --bytes through TLS 1.3 over loopback between two processes with
// plain OpenSSL, for AES-256-GCM (what runner negotiates) and AES-128-GCM; best of --runs.
int tlsFloor(const Options& options);

}  // namespace bench
}  // namespace runner

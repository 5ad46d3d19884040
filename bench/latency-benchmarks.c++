// Output latency (P7): how long after a job writes a line a follower receives it, through runner's
// mutual-TLS RPC stack and through the references: `tail -f` of a file, and ssh running the same
// writer. The writer is runner-bench itself (line-writer); it stamps each line with
// CLOCK_MONOTONIC, which every process on the machine shares, so the reader subtracts the stamp
// from its own clock.

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "bench/benchmarks.h"

namespace runner {
namespace bench {

namespace {

// Every line is "SEQ STAMP_NS " padded with '.' to this size, its newline included: about a log
// line's length.
constexpr size_t LINE_BYTES = 64;

uint64_t monotonicNanos() {
  struct timespec ts;
  KJ_SYSCALL(clock_gettime(CLOCK_MONOTONIC, &ts));
  return uint64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Splits output into lines as it arrives (a line may come in pieces, or many in one piece) and
// records, for every line after the first `warmup`, its arrival minus its stamp.
class LineLatencies {
 public:
  LineLatencies(uint64_t warmup, uint64_t lines) : warmup(warmup), total(warmup + lines) {}

  // `data` arrived at `arrivalNanos` (monotonicNanos()).
  void add(kj::ArrayPtr<const kj::byte> data, uint64_t arrivalNanos) {
    for (auto byte : data) {
      if (byte != '\n') {
        partial.add(byte);
        continue;
      }
      partial.add('\0');
      char* end;
      uint64_t sequence = strtoull(partial.begin(), &end, 10);
      KJ_REQUIRE(*end == ' ', "not a line of line-writer", partial.begin());
      uint64_t stampNanos = strtoull(end + 1, &end, 10);
      KJ_REQUIRE(*end == ' ' || *end == '\0', "not a line of line-writer", partial.begin());
      KJ_REQUIRE(sequence == seen, "a line was lost or came out of order", sequence, seen);
      KJ_REQUIRE(seen < total, "more lines than written", seen);
      if (seen >= warmup) samples.add((arrivalNanos - stampNanos) * 1e-9);
      ++seen;
      partial.clear();
    }
  }

  bool complete() const { return seen == total; }
  uint64_t linesSeen() const { return seen; }

  // The measured latencies, in seconds.
  Samples samples;

 private:
  uint64_t warmup;
  uint64_t total;
  uint64_t seen = 0;
  kj::Vector<char> partial;
};

// What the writer is told: a line every `intervalMs` after `delayMs`, `lines` of them.
kj::Array<kj::String> writerArgs(uint64_t intervalMs, uint64_t lines, uint64_t delayMs) {
  return kj::arr(kj::str("line-writer"), kj::str("--interval-ms=", intervalMs),
                 kj::str("--lines=", lines), kj::str("--delay-ms=", delayMs));
}

// This program's own path: the writer the references run.
kj::String selfPath() {
  char path[4096];
  ssize_t n;
  KJ_SYSCALL(n = readlink("/proc/self/exe", path, sizeof(path) - 1));
  return kj::heapString(path, n);
}

// Runs `argv` with stdin from /dev/null and stdout to `stdoutFd`.
pid_t spawn(kj::ArrayPtr<const kj::StringPtr> argv, int stdoutFd) {
  auto cArgs = kj::heapArray<const char*>(argv.size() + 1);
  for (size_t i = 0; i < argv.size(); i++) cArgs[i] = argv[i].cStr();
  cArgs[argv.size()] = nullptr;
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    KJ_DEFER(_exit(127));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    int devNull = open("/dev/null", O_RDONLY);
    if (devNull < 0 || dup2(devNull, 0) < 0 || dup2(stdoutFd, 1) < 0) return pid;
    execvp(cArgs[0], const_cast<char* const*>(cArgs.begin()));
    perror(cArgs[0]);
    return pid;
  }
  return pid;
}

int waitExit(pid_t pid) {
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Reads `fd` until `lines` has every line, stamping each read with its arrival.
void readLines(int fd, LineLatencies& lines) {
  kj::byte buffer[65536];
  while (!lines.complete()) {
    ssize_t n;
    KJ_SYSCALL(n = read(fd, buffer, sizeof(buffer)));
    uint64_t arrival = monotonicNanos();
    KJ_REQUIRE(n > 0, "the output ended early", lines.linesSeen());
    lines.add(kj::arrayPtr(buffer, n), arrival);
  }
}

// Starts `writer` as a job writing a line every `intervalMs`.
capnp::RemotePromise<api::JobManager::StartResults> startLineWriter(Connection& connection,
                                                                    kj::StringPtr writer,
                                                                    uint64_t intervalMs,
                                                                    uint64_t lines,
                                                                    uint64_t delayMs) {
  auto request = connection.manager.startRequest();
  auto spec = request.initSpec();
  spec.setCommand(writer);
  auto args = writerArgs(intervalMs, lines, delayMs);
  auto list = spec.initArgs(args.size());
  for (size_t i = 0; i < args.size(); i++) list.set(i, args[i]);
  return request.send();
}

void writeAll(int fd, const void* data, size_t size) {
  auto bytes = reinterpret_cast<const char*>(data);
  while (size > 0) {
    ssize_t n;
    KJ_SYSCALL(n = write(fd, bytes, size));
    bytes += n;
    size -= n;
  }
}

void readAll(int fd, void* data, size_t size) {
  auto bytes = reinterpret_cast<char*>(data);
  while (size > 0) {
    ssize_t n;
    KJ_SYSCALL(n = read(fd, bytes, size));
    KJ_REQUIRE(n > 0, "the process of the other followers went away");
    bytes += n;
    size -= n;
  }
}

// The load beside the measured follower: --others jobs writing a line every --others-interval-ms,
// each followed from its start, over --others-connections connections; each writes `lines`, more
// than the measurement lasts, and ends by itself should it outlive it. Runs in a process of its
// own, so that their traffic does not share the measured follower's event loop. Says it is ready
// on `readyFd` once every follower has received a line; when `goFd` is written or closed, stops
// the jobs, waits for the ends of their outputs, and writes the bytes received to `readyFd`.
void runOtherFollowers(const Options& options, kj::StringPtr writer, uint64_t lines, int readyFd,
                       int goFd) {
  auto count = options.getNumber("others", 100);
  auto connectionCount = kj::max(options.getNumber("others-connections", 10), uint64_t(1));
  auto intervalMs = options.getNumber("others-interval-ms", 100);
  auto io = kj::setupAsyncIo();
  kj::Vector<kj::Own<Connection>> connections;
  for (uint64_t i = 0; i < connectionCount; i++) {
    connections.add(kj::heap<Connection>(io, options));
  }
  auto counts = kj::heapArray<uint64_t>(count);
  kj::Vector<api::Job::Client> jobs;
  kj::Vector<kj::Promise<void>> watches;
  kj::Maybe<size_t> ended;
  for (uint64_t i = 0; i < count; i++) {
    auto started = startLineWriter(*connections[i % connectionCount], writer, intervalMs, lines, 0);
    counts[i] = 0;
    jobs.add(started.getJob());
    watches.add(watchToEnd(started.getJob(), true, counts[i])
                    .then([&ended, i]() { ended = i; })
                    .eagerlyEvaluate(nullptr));
  }
  double deadline = now() + 60;
  while (std::any_of(counts.begin(), counts.end(), [](uint64_t bytes) { return bytes == 0; })) {
    KJ_IF_MAYBE (i, ended) {
      auto info = jobs[*i].infoRequest().send().wait(io.waitScope).getInfo();
      KJ_FAIL_REQUIRE("another job ended before the measurement", info.getState(), info.getError());
    }
    KJ_REQUIRE(now() < deadline, "the other followers received nothing within 60 s");
    io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
  }
  char byte = 0;
  writeAll(readyFd, &byte, 1);

  auto go = io.lowLevelProvider->wrapInputFd(goFd);
  go->tryRead(&byte, 1, 1).wait(io.waitScope);
  kj::Vector<kj::Promise<void>> stops;
  for (auto& job : jobs) stops.add(job.stopRequest().send().ignoreResult());
  kj::joinPromises(stops.releaseAsArray()).wait(io.waitScope);
  kj::joinPromises(watches.releaseAsArray()).wait(io.waitScope);
  uint64_t bytes = 0;
  for (auto received : counts) bytes += received;
  writeAll(readyFd, &bytes, sizeof(bytes));
}

// The other followers' process, from the parent's side.
struct OtherFollowers {
  pid_t pid = 0;
  int readyFd = -1;
  int goFd = -1;
};

OtherFollowers startOtherFollowers(const Options& options, kj::StringPtr writer, uint64_t lines) {
  int ready[2], go[2];
  KJ_SYSCALL(pipe2(ready, O_CLOEXEC));
  KJ_SYSCALL(pipe2(go, O_CLOEXEC));
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    close(ready[0]);
    close(go[1]);
    int status = 0;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                        [&]() { runOtherFollowers(options, writer, lines, ready[1], go[0]); })) {
      fprintf(stderr, "other followers: %s\n", e->getDescription().cStr());
      status = 1;
    }
    _exit(status);
  }
  close(ready[1]);
  close(go[0]);
  char byte;
  readAll(ready[0], &byte, 1);
  return OtherFollowers{pid, ready[0], go[1]};
}

// Lets the other followers go; returns the bytes they received.
uint64_t stopOtherFollowers(OtherFollowers& others) {
  char byte = 0;
  writeAll(others.goFd, &byte, 1);
  uint64_t bytes;
  readAll(others.readyFd, &bytes, sizeof(bytes));
  KJ_REQUIRE(waitExit(others.pid) == 0, "the process of the other followers failed");
  close(others.readyFd);
  close(others.goFd);
  return bytes;
}

// A follower over runner: starts the writer as a job and, pipelined on it, follows its output.
void followOverRunner(const Options& options, kj::StringPtr writer, LineLatencies& lines,
                      uint64_t intervalMs, uint64_t count, uint64_t delayMs) {
  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  connection.manager.whoamiRequest().send().wait(io.waitScope);
  auto started = startLineWriter(connection, writer, intervalMs, count, delayMs);
  watchToEnd(started.getJob(), true, [&lines](kj::ArrayPtr<const kj::byte> data) {
    lines.add(data, monotonicNanos());
  }).wait(io.waitScope);
  requireExited(started.getJob().waitRequest().send().wait(io.waitScope).getInfo());
}

// `tail -n +1 -f` of a file the writer appends to, read through a pipe.
void followWithTail(const Options& options, kj::StringPtr writer, LineLatencies& lines,
                    uint64_t intervalMs, uint64_t count, uint64_t delayMs) {
  auto path = kj::str(options.get("dir"), "/line-latency-", getpid(), ".log");
  int fd;
  KJ_SYSCALL(fd = open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644),
             path);
  kj::AutoCloseFd file(fd);
  KJ_DEFER(unlink(path.cStr()));
  int pipeFds[2];
  KJ_SYSCALL(pipe2(pipeFds, O_CLOEXEC));
  kj::AutoCloseFd readEnd(pipeFds[0]);
  kj::AutoCloseFd writeEnd(pipeFds[1]);

  kj::StringPtr tailArgs[] = {"tail", "-n", "+1", "-f", path};
  pid_t tail = spawn(kj::arrayPtr(tailArgs, kj::size(tailArgs)), writeEnd);
  KJ_DEFER({
    kill(tail, SIGTERM);
    waitpid(tail, nullptr, 0);
  });
  writeEnd = nullptr;
  auto args = writerArgs(intervalMs, count, delayMs);
  kj::Vector<kj::StringPtr> writerArgv;
  writerArgv.add(writer);
  for (auto& arg : args) writerArgv.add(arg);
  pid_t writing = spawn(writerArgv.asPtr(), file);
  file = nullptr;
  readLines(readEnd, lines);
  KJ_REQUIRE(waitExit(writing) == 0, "the writer failed");
}

// The command after `--` (ssh HOST PATH-OF-RUNNER-BENCH) with the writer's arguments appended,
// read through a pipe.
void followCommand(const Options& options, LineLatencies& lines, uint64_t intervalMs,
                   uint64_t count, uint64_t delayMs) {
  KJ_REQUIRE(options.command().size() > 0, "--via=command needs a command after --");
  int pipeFds[2];
  KJ_SYSCALL(pipe2(pipeFds, O_CLOEXEC));
  kj::AutoCloseFd readEnd(pipeFds[0]);
  kj::AutoCloseFd writeEnd(pipeFds[1]);
  auto args = writerArgs(intervalMs, count, delayMs);
  kj::Vector<kj::StringPtr> argv;
  argv.addAll(options.command());
  for (auto& arg : args) argv.add(arg);
  pid_t pid = spawn(argv.asPtr(), writeEnd);
  writeEnd = nullptr;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { readLines(readEnd, lines); })) {
    kill(pid, SIGTERM);
    waitExit(pid);
    kj::throwFatalException(kj::mv(*e));
  }
  KJ_REQUIRE(waitExit(pid) == 0, "the command failed", options.command()[0]);
}

}  // namespace

int lineWriter(const Options& options) {
  auto intervalNanos = options.getNumber("interval-ms", 10) * 1000000;
  auto lines = options.getNumber("lines", 100);
  auto delayNanos = options.getNumber("delay-ms", 0) * 1000000;
  uint64_t next = monotonicNanos() + delayNanos;
  char line[LINE_BYTES];
  for (uint64_t sequence = 0; sequence < lines; sequence++) {
    struct timespec at = {time_t(next / 1000000000), long(next % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
    }
    int n = snprintf(line, sizeof(line), "%llu %llu ", (unsigned long long)sequence,
                     (unsigned long long)monotonicNanos());
    KJ_ASSERT(n > 0 && size_t(n) < LINE_BYTES);
    memset(line + n, '.', LINE_BYTES - 1 - n);
    line[LINE_BYTES - 1] = '\n';
    writeAll(STDOUT_FILENO, line, LINE_BYTES);
    next += intervalNanos;
  }
  return 0;
}

int lineLatency(const Options& options) {
  auto via = options.get("via");
  auto intervalMs = options.getNumber("interval-ms", 10);
  auto count = options.getNumber("lines", 500);
  auto warmup = options.getNumber("warmup", 10);
  auto delayMs = options.getNumber("delay-ms", 100);
  auto writer = options.has("writer") ? kj::str(options.get("writer")) : selfPath();
  LineLatencies lines(warmup, count);

  JsonObject out;
  out.add("via", via);
  if (via == "runner") {
    auto otherCount = options.getNumber("others", 0);
    OtherFollowers others;
    if (otherCount > 0) {
      // Enough lines to outlast the measurement by a minute.
      auto lasting = delayMs + (warmup + count) * intervalMs + 60000;
      others = startOtherFollowers(
          options, writer,
          lasting / kj::max(options.getNumber("others-interval-ms", 100), uint64_t(1)));
    }
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   followOverRunner(options, writer, lines, intervalMs, warmup + count, delayMs);
                 })) {
      if (otherCount > 0) {
        // Closing the pipe stops their jobs too.
        close(others.goFd);
        waitExit(others.pid);
      }
      kj::throwFatalException(kj::mv(*e));
    }
    out.add("others", otherCount);
    if (otherCount > 0) {
      out.add("others_interval_ms", options.getNumber("others-interval-ms", 100));
      out.add("others_bytes", stopOtherFollowers(others));
    }
  } else if (via == "tail") {
    followWithTail(options, writer, lines, intervalMs, warmup + count, delayMs);
  } else if (via == "command") {
    followCommand(options, lines, intervalMs, warmup + count, delayMs);
  } else {
    KJ_FAIL_REQUIRE("--via is runner, tail or command", via);
  }
  out.add("lines", count);
  out.add("interval_ms", intervalMs);
  out.add("p50_us", lines.samples.percentile(50) * 1e6);
  out.add("p99_us", lines.samples.percentile(99) * 1e6);
  out.add("max_us", lines.samples.percentile(100) * 1e6);
  out.add("min_us", lines.samples.min() * 1e6);
  out.add("mean_us", lines.samples.mean() * 1e6);
  printf("%s\n", out.toString().cStr());
  return 0;
}

}  // namespace bench
}  // namespace runner

// Streaming output: one follower (P3), many followers (P4), and a client that stops reading
// (P4b). The followers count the bytes they receive and throw them away.

#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/benchmarks.h"

namespace runner {
namespace bench {

namespace {

api::Job::Client getJob(Connection& connection, kj::StringPtr id) {
  auto request = connection.manager.getRequest();
  request.setId(id);
  return request.send().getJob();
}

// Starts `head -c BYTES /dev/zero`.
capnp::RemotePromise<api::JobManager::StartResults> startWriter(Connection& connection,
                                                                uint64_t bytes) {
  auto request = connection.manager.startRequest();
  auto spec = request.initSpec();
  spec.setCommand("/usr/bin/head");
  auto args = spec.initArgs(3);
  args.set(0, "-c");
  args.set(1, kj::str(bytes));
  args.set(2, "/dev/zero");
  return request.send();
}

double mebibytes(uint64_t kib) { return kib / 1024.0; }

// What one client process of followMany reports to the parent through a pipe.
struct ClientReport {
  uint64_t bytes;
  double begin;
  double end;
};

void writeAll(int fd, const void* data, size_t size) {
  KJ_SYSCALL(write(fd, data, size));
}

void readAll(int fd, void* data, size_t size) {
  auto bytes = reinterpret_cast<char*>(data);
  while (size > 0) {
    ssize_t n;
    KJ_SYSCALL(n = read(fd, bytes, size));
    KJ_REQUIRE(n > 0, "a client process of the benchmark went away");
    bytes += n;
    size -= n;
  }
}

// One client process: connects, says it is ready, waits for the go, runs `followers`.
void followClient(const Options& options, uint64_t followers, int readyFd, int goFd) {
  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  auto job = getJob(connection, options.get("job"));
  job.infoRequest().send().wait(io.waitScope);
  char byte = 0;
  writeAll(readyFd, &byte, 1);
  readAll(goFd, &byte, 1);

  auto counts = kj::heapArray<uint64_t>(followers);
  kj::Vector<kj::Promise<void>> watches;
  ClientReport report{0, now(), 0};
  for (auto& count : counts) {
    count = 0;
    watches.add(watchToEnd(job, false, count));
  }
  kj::joinPromises(watches.releaseAsArray()).wait(io.waitScope);
  report.end = now();
  for (auto count : counts) report.bytes += count;
  writeAll(readyFd, &report, sizeof(report));
}

}  // namespace

int prepareOutput(const Options& options) {
  auto bytes = options.getNumber("bytes", 1 << 30);
  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  auto started = startWriter(connection, bytes);
  auto response = started.getJob().waitRequest().send().wait(io.waitScope);
  requireExited(response.getInfo());
  KJ_REQUIRE(response.getInfo().getOutputBytes() == bytes, response.getInfo().getOutputBytes());
  JsonObject out;
  out.add("job", response.getInfo().getId());
  out.add("bytes", bytes);
  printf("%s\n", out.toString().cStr());
  return 0;
}

namespace {

// `head -c BYTES /dev/zero` appending to a new file `path`, with nobody following: how fast the
// live job's writer goes alone, and the CPU it takes.
struct WriterAlone {
  double mbPerS;
  double cpuSeconds;
};
WriterAlone writeAlone(kj::StringPtr path, uint64_t bytes) {
  int fd;
  KJ_SYSCALL(fd = open(path.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600),
             path);
  kj::AutoCloseFd output(fd);
  auto count = kj::str(bytes);
  double begin = now();
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    dup2(output.get(), STDOUT_FILENO);
    execl("/usr/bin/head", "head", "-c", count.cStr(), "/dev/zero", (char*)nullptr);
    _exit(127);
  }
  int status;
  struct rusage usage;
  KJ_SYSCALL(wait4(pid, &status, 0, &usage));
  double elapsed = now() - begin;
  KJ_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "head failed", status);
  struct stat st;
  KJ_SYSCALL(fstat(output.get(), &st), path);
  KJ_REQUIRE(uint64_t(st.st_size) == bytes, "short output", st.st_size, bytes);
  auto seconds = [](const struct timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return {bytes / elapsed / 1e6, seconds(usage.ru_utime) + seconds(usage.ru_stime)};
}

}  // namespace

int followOne(const Options& options) {
  auto runs = options.getNumber("runs", 3);
  auto expected = options.getNumber("bytes", 0);
  auto liveBytes = options.getNumber("live-bytes", 0);
  auto liveRuns = options.getNumber("live-runs", 1);
  pid_t server = options.getNumber("server-pid", 0);
  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  auto job = getJob(connection, options.get("job"));

  // CPU seconds each side spent on one run (runnerd's only with --server-pid).
  struct Cpu {
    pid_t server;
    double serverBegin = 0, clientBegin = 0;
    Samples serverSeconds, clientSeconds;
    void begin() {
      if (server > 0) serverBegin = processCpuSeconds(server);
      clientBegin = ownCpuSeconds();
    }
    void end() {
      if (server > 0) serverSeconds.add(processCpuSeconds(server) - serverBegin);
      clientSeconds.add(ownCpuSeconds() - clientBegin);
    }
    void report(JsonObject& out, kj::StringPtr prefix) {
      if (server > 0) out.add(kj::str(prefix, "server_cpu_s"), serverSeconds.percentile(50));
      out.add(kj::str(prefix, "client_cpu_s"), clientSeconds.percentile(50));
    }
  };

  Samples rates;
  Cpu finishedCpu{server};
  for (uint64_t i = 0; i < runs; i++) {
    uint64_t bytes = 0;
    finishedCpu.begin();
    double begin = now();
    watchToEnd(job, false, bytes).wait(io.waitScope);
    double elapsed = now() - begin;
    finishedCpu.end();
    KJ_REQUIRE(expected == 0 || bytes == expected, "short output", bytes, expected);
    rates.add(bytes / elapsed / 1e6);
  }
  JsonObject out;
  out.add("runs", runs);
  out.add("mb_per_s", rates.percentile(50));
  out.add("best_mb_per_s", rates.percentile(100));
  finishedCpu.report(out, "");
  out.add("cores", uint64_t(sysconf(_SC_NPROCESSORS_ONLN)));

  if (liveBytes > 0) {
    // With --alone-dir, each live run is followed by the same writer alone, writing into a file
    // of that directory (on the log directory's file system): the two in turns.
    auto aloneDir = options.get("alone-dir", "");
    Samples liveRates, writerSeconds, aloneRates, aloneSeconds;
    Cpu liveCpu{server};
    kj::Vector<kj::String> aloneFiles;
    KJ_DEFER(for (auto& path : aloneFiles) unlink(path.cStr()));
    for (uint64_t i = 0; i < liveRuns; i++) {
      uint64_t bytes = 0;
      liveCpu.begin();
      double begin = now();
      auto started = startWriter(connection, liveBytes);
      watchToEnd(started.getJob(), true, bytes).wait(io.waitScope);
      double elapsed = now() - begin;
      liveCpu.end();
      auto info = started.getJob().waitRequest().send().wait(io.waitScope).getInfo();
      requireExited(info);
      KJ_REQUIRE(bytes == liveBytes, "short output", bytes, liveBytes);
      liveRates.add(bytes / elapsed / 1e6);
      writerSeconds.add(jobCpuSeconds(info));
      if (aloneDir.size() > 0) {
        aloneFiles.add(kj::str(aloneDir, "/writer-alone.", getpid(), ".", i));
        auto alone = writeAlone(aloneFiles.back(), liveBytes);
        aloneRates.add(alone.mbPerS);
        aloneSeconds.add(alone.cpuSeconds);
      }
    }
    out.add("live_runs", liveRuns);
    out.add("live_mb_per_s", liveRates.percentile(50));
    out.add("live_writer_cpu_s", writerSeconds.percentile(50));
    liveCpu.report(out, "live_");
    if (aloneDir.size() > 0) {
      out.add("alone_mb_per_s", aloneRates.percentile(50));
      out.add("alone_writer_cpu_s", aloneSeconds.percentile(50));
    }
  }
  printf("%s\n", out.toString().cStr());
  return 0;
}

int followMany(const Options& options) {
  auto followers = options.getNumber("followers", 100);
  auto clients = options.getNumber("clients", 2);
  auto expected = options.getNumber("bytes", 0);
  pid_t server = options.getNumber("server-pid", 0);
  KJ_REQUIRE(server > 0, "--server-pid is required");

  resetPeakMemory(server);
  auto before = readMemory(server);

  struct Child {
    pid_t pid;
    int reportFd;
    int goFd;
  };
  kj::Vector<Child> children;
  for (uint64_t c = 0; c < clients; c++) {
    uint64_t share = followers / clients + (c < followers % clients ? 1 : 0);
    int report[2], go[2];
    KJ_SYSCALL(pipe(report));
    KJ_SYSCALL(pipe(go));
    pid_t pid;
    KJ_SYSCALL(pid = fork());
    if (pid == 0) {
      close(report[0]);
      close(go[1]);
      int status = 0;
      KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                          [&]() { followClient(options, share, report[1], go[0]); })) {
        fprintf(stderr, "follower client: %s\n", e->getDescription().cStr());
        status = 1;
      }
      _exit(status);
    }
    close(report[1]);
    close(go[0]);
    children.add(Child{pid, report[0], go[1]});
  }
  char byte;
  for (auto& child : children) readAll(child.reportFd, &byte, 1);
  for (auto& child : children) writeAll(child.goFd, &byte, 1);

  uint64_t bytes = 0;
  double begin = 1e300, end = 0;
  for (auto& child : children) {
    ClientReport report;
    readAll(child.reportFd, &report, sizeof(report));
    bytes += report.bytes;
    begin = kj::min(begin, report.begin);
    end = kj::max(end, report.end);
    int status;
    KJ_SYSCALL(waitpid(child.pid, &status, 0));
    close(child.reportFd);
    close(child.goFd);
  }
  auto after = readMemory(server);
  KJ_REQUIRE(expected == 0 || bytes == expected * followers, "short output", bytes,
             expected * followers);

  JsonObject out;
  out.add("followers", followers);
  out.add("clients", clients);
  out.add("bytes", bytes);
  out.add("mb_per_s", bytes / (end - begin) / 1e6);
  out.add("rss_before_mib", mebibytes(before.rssKib));
  out.add("rss_peak_mib", mebibytes(after.hwmKib));
  out.add("rss_growth_mib", mebibytes(after.hwmKib - before.rssKib));
  printf("%s\n", out.toString().cStr());
  return 0;
}

int stalledReader(const Options& options) {
  auto bytes = options.getNumber("bytes", 1 << 30);
  auto logDir = options.get("log-dir");
  pid_t server = options.getNumber("server-pid", 0);
  KJ_REQUIRE(server > 0, "--server-pid is required");

  auto io = kj::setupAsyncIo();
  Connection connection(io, options);
  connection.manager.whoamiRequest().send().wait(io.waitScope);
  resetPeakMemory(server);
  auto before = readMemory(server);

  uint64_t received = 0;
  auto started = startWriter(connection, bytes);
  auto watching = watchToEnd(started.getJob(), true, received);
  auto id = kj::str(started.wait(io.waitScope).getInfo().getId());

  // From here on this client never runs its event loop again: it reads nothing more.
  auto path = kj::str(logDir, '/', id, ".log");
  double deadline = now() + 120;
  while (true) {
    struct stat st;
    KJ_SYSCALL(stat(path.cStr(), &st), path);
    if (static_cast<uint64_t>(st.st_size) >= bytes) break;
    KJ_REQUIRE(now() < deadline, "the job did not write its output within 120 s", path);
    usleep(10000);
  }
  usleep(500000);
  auto after = readMemory(server);

  JsonObject out;
  out.add("bytes", bytes);
  out.add("received_before_stall", received);
  out.add("rss_before_mib", mebibytes(before.rssKib));
  out.add("rss_after_mib", mebibytes(after.rssKib));
  out.add("rss_peak_mib", mebibytes(after.hwmKib));
  out.add("rss_growth_mib", mebibytes(after.hwmKib - before.rssKib));
  printf("%s\n", out.toString().cStr());
  return 0;
}

}  // namespace bench
}  // namespace runner

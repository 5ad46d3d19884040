#include "bench/bench-support.h"

#include <algorithm>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

namespace runner {
namespace bench {

Options::Options(kj::ArrayPtr<const kj::StringPtr> args) {
  for (size_t i = 0; i < args.size(); i++) {
    auto arg = args[i];
    if (arg == "--") {
      rest = args.slice(i + 1, args.size());
      return;
    }
    KJ_REQUIRE(arg.startsWith("--"), "options are --name=value", arg);
    KJ_IF_MAYBE (eq, arg.findFirst('=')) {
      values.upsert(kj::str(arg.slice(2, *eq)), kj::str(arg.slice(*eq + 1)),
                    [](kj::String& old, kj::String&& value) { old = kj::mv(value); });
    } else {
      values.upsert(kj::str(arg.slice(2)), kj::str(""),
                    [](kj::String& old, kj::String&& value) { old = kj::mv(value); });
    }
  }
}

kj::StringPtr Options::get(kj::StringPtr name) const {
  KJ_IF_MAYBE (value, values.find(name)) {
    return *value;
  }
  KJ_FAIL_REQUIRE("missing option", name);
}

kj::StringPtr Options::get(kj::StringPtr name, kj::StringPtr defaultValue) const {
  KJ_IF_MAYBE (value, values.find(name)) {
    return *value;
  }
  return defaultValue;
}

uint64_t Options::getNumber(kj::StringPtr name, uint64_t defaultValue) const {
  KJ_IF_MAYBE (value, values.find(name)) {
    char* end;
    uint64_t n = strtoull(value->cStr(), &end, 10);
    KJ_REQUIRE(value->size() > 0 && *end == '\0', "not a number", name, *value);
    return n;
  }
  return defaultValue;
}

bool Options::has(kj::StringPtr name) const { return values.find(name) != nullptr; }

double now() {
  struct timespec ts;
  KJ_SYSCALL(clock_gettime(CLOCK_MONOTONIC, &ts));
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void Samples::sort() {
  if (!sorted) std::sort(values.begin(), values.end());
  sorted = true;
}

double Samples::percentile(double p) {
  KJ_REQUIRE(values.size() > 0, "no samples");
  sort();
  size_t rank = static_cast<size_t>(p / 100.0 * values.size() + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > values.size()) rank = values.size();
  return values[rank - 1];
}

double Samples::mean() const {
  KJ_REQUIRE(values.size() > 0, "no samples");
  double sum = 0;
  for (double v : values) sum += v;
  return sum / values.size();
}

double Samples::min() { return percentile(0); }

void JsonObject::add(kj::StringPtr key, double value) {
  char text[64];
  snprintf(text, sizeof(text), "%.6g", value);
  members.add(kj::str('"', key, "\":", text));
}

void JsonObject::add(kj::StringPtr key, uint64_t value) {
  members.add(kj::str('"', key, "\":", value));
}

void JsonObject::add(kj::StringPtr key, kj::StringPtr value) {
  kj::Vector<char> quoted;
  for (char c : value) {
    if (c == '"' || c == '\\') quoted.add('\\');
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    quoted.add(c);
  }
  members.add(kj::str('"', key, "\":\"", quoted, '"'));
}

kj::String JsonObject::toString() const { return kj::str('{', kj::strArray(members, ","), '}'); }

Connection::Connection(kj::AsyncIoContext& io, const Options& options)
    : Connection(io, options, options.get("server")) {}

Connection::Connection(kj::AsyncIoContext& io, const Options& options, kj::StringPtr address) {
  client::ServerSettings settings;
  settings.server = kj::str(address);
  settings.serverName = tls::ClientTls::hostOf(settings.server);
  settings.cert = kj::str(options.get("cert"));
  settings.key = kj::str(options.get("key"));
  settings.ca = kj::str(options.get("ca"));
  server = client::connectToServer(io.provider->getNetwork(), settings).wait(io.waitScope);
  manager = server->jobManager();
}

namespace {

// Hands what arrives to a function; fulfills `ended` when the server says the output is complete.
class FunctionSink final : public api::OutputSink::Server {
 public:
  FunctionSink(kj::Function<void(kj::ArrayPtr<const kj::byte>)> received,
               kj::Own<kj::PromiseFulfiller<void>> ended)
      : received(kj::mv(received)), ended(kj::mv(ended)) {}

 protected:
  kj::Promise<void> write(WriteContext context) override {
    received(context.getParams().getData());
    return kj::READY_NOW;
  }

  kj::Promise<void> end(EndContext context) override {
    ended->fulfill();
    return kj::READY_NOW;
  }

 private:
  kj::Function<void(kj::ArrayPtr<const kj::byte>)> received;
  kj::Own<kj::PromiseFulfiller<void>> ended;
};

}  // namespace

kj::Promise<void> watchToEnd(api::Job::Client job, bool follow,
                             kj::Function<void(kj::ArrayPtr<const kj::byte>)> received) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto request = job.watchOutputRequest();
  request.setSink(kj::heap<FunctionSink>(kj::mv(received), kj::mv(paf.fulfiller)));
  request.setFromOffset(0);
  request.setFollow(follow);
  return request.send().then(
      [ended = kj::mv(paf.promise)](capnp::Response<api::Job::WatchOutputResults>&& response) mutable {
        return ended.attach(response.getHandle());
      });
}

kj::Promise<void> watchToEnd(api::Job::Client job, bool follow, uint64_t& bytes) {
  return watchToEnd(job, follow, [&bytes](kj::ArrayPtr<const kj::byte> data) {
    bytes += data.size();
  });
}

namespace {

// /proc files report a size of 0: read until EOF.
kj::String readProcFile(kj::StringPtr path) {
  int fd;
  KJ_SYSCALL(fd = open(path.cStr(), O_RDONLY | O_CLOEXEC), path);
  kj::AutoCloseFd owned(fd);
  kj::Vector<char> text;
  char buffer[4096];
  ssize_t n;
  while (true) {
    KJ_SYSCALL(n = read(fd, buffer, sizeof(buffer)), path);
    if (n == 0) break;
    text.addAll(kj::arrayPtr(buffer, n));
  }
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

uint64_t statusField(kj::StringPtr status, const char* name) {
  const char* line = strstr(status.cStr(), name);
  KJ_REQUIRE(line != nullptr, "no such field in /proc/PID/status", name);
  return strtoull(line + strlen(name), nullptr, 10);
}

}  // namespace

Memory readMemory(pid_t pid) {
  auto status = readProcFile(kj::str("/proc/", pid, "/status"));
  return {statusField(status, "VmRSS:"), statusField(status, "VmHWM:")};
}

void resetPeakMemory(pid_t pid) {
  auto path = kj::str("/proc/", pid, "/clear_refs");
  int fd;
  KJ_SYSCALL(fd = open(path.cStr(), O_WRONLY | O_CLOEXEC), path);
  kj::AutoCloseFd owned(fd);
  KJ_SYSCALL(write(fd, "5", 1), path);
}

double processCpuSeconds(pid_t pid) {
  auto stat = readProcFile(kj::str("/proc/", pid, "/stat"));
  // The command name (field 2) may hold spaces: fields are counted from the ')' that ends it.
  KJ_IF_MAYBE (close, stat.findLast(')')) {
    auto rest = stat.slice(*close + 1);
    unsigned long utime, stime;
    // Fields 3 to 15; utime and stime are 14 and 15, in clock ticks.
    int n = sscanf(rest.cStr(), " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                   &stime);
    KJ_REQUIRE(n == 2, "unexpected /proc/PID/stat", stat);
    return double(utime + stime) / sysconf(_SC_CLK_TCK);
  }
  KJ_FAIL_REQUIRE("unexpected /proc/PID/stat", stat);
}

double ownCpuSeconds() {
  struct rusage usage;
  KJ_SYSCALL(getrusage(RUSAGE_SELF, &usage));
  auto seconds = [](const struct timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double jobCpuSeconds(api::JobInfo::Reader info) {
  auto usage = info.getUsage();
  return (usage.getCpuUserMicros() + usage.getCpuSystemMicros()) / 1e6;
}

void requireExited(api::JobInfo::Reader info, int exitCode) {
  KJ_REQUIRE(info.getState() == api::State::EXITED && info.getExitCode() == exitCode,
             "the job did not exit as expected", info.getId(), info.getState(),
             info.getExitCode(), info.getError());
}

}  // namespace bench
}  // namespace runner

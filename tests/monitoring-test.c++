// runnerd's metrics and health endpoint (--metrics-listen) through a real runnerd: what /metrics
// counts after jobs of every end, that every scrape is valid Prometheus text (promtool too) and
// its counters only grow while jobs start and output streams, /healthz when the supervisor is
// gone, and the listener's bounds against slow and greedy clients.

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <regex>
#include <string>
#include <thread>

#include "tests/e2e-support.h"
#include "tests/loop-disk.h"

namespace runner::testing {
namespace {

// The metrics listener's address, from runnerd's log (its latest start's).
kj::String metricsAddress(RunnerdFixture& f) {
  auto log = f.serverLog();
  const char* marker = "metrics served over plain HTTP on ";
  const char* at = nullptr;
  for (const char* p = log.cStr(); (p = strstr(p, marker)) != nullptr; p++) at = p;
  KJ_ASSERT(at != nullptr, "runnerd did not say where it serves metrics", log);
  at += strlen(marker);
  return kj::heapString(at, strchr(at, ' ') - at);
}

// Waits until `fd` is readable or closed, at most `millis`; whether it is.
bool readable(int fd, int millis) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, millis) == 1;
}

// Reads until the peer closes (or `millis` pass without a byte).
std::string readAll(int fd, int millis = 10000) {
  std::string all;
  char buffer[65536];
  while (readable(fd, millis)) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    all.append(buffer, n);
  }
  return all;
}

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

// One request over a plain socket, as a monitoring probe would make it; the answer is read up to
// its Content-Length (the server keeps the connection open for another request).
HttpReply httpRequest(kj::StringPtr address, kj::StringPtr method, kj::StringPtr path) {
  int fd = connectTcp(address);
  KJ_DEFER(close(fd));
  auto request = kj::str(method, " ", path, " HTTP/1.1\r\nHost: runnerd\r\n\r\n");
  KJ_ASSERT(write(fd, request.begin(), request.size()) == ssize_t(request.size()));
  std::string text;
  char buffer[65536];
  HttpReply reply;
  size_t length = std::string::npos;
  size_t end = std::string::npos;
  while (end == std::string::npos || text.size() < end + 4 + length) {
    KJ_ASSERT(readable(fd, 10000), "no answer within 10 s", text);
    ssize_t n = read(fd, buffer, sizeof(buffer));
    KJ_ASSERT(n > 0, "the connection closed before the whole answer", text);
    text.append(buffer, n);
    if (end == std::string::npos && (end = text.find("\r\n\r\n")) != std::string::npos) {
      auto at = text.find("Content-Length: ");
      KJ_ASSERT(at != std::string::npos && at < end, "no Content-Length", text);
      length = strtoul(text.c_str() + at + strlen("Content-Length: "), nullptr, 10);
    }
  }
  reply.headers = text.substr(0, end);
  reply.body = text.substr(end + 4);
  KJ_ASSERT(reply.body.size() == length, "more than the answer", text);
  KJ_ASSERT(sscanf(text.c_str(), "HTTP/1.1 %d", &reply.status) == 1, text);
  return reply;
}

// A scrape's samples by their name and labels as written ("runner_jobs{state=\"running\",...}"),
// checked line by line against the text format: every sample belongs to a family whose HELP and
// TYPE came first, and nothing else is there.
std::map<std::string, double> parseMetrics(const std::string& text) {
  static const std::regex help("# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*");
  static const std::regex type("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)");
  static const std::regex sample(
      "([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\\n]|\\\\[\\\\\"n])*\",?)*"
      "\\})?"
      " (-?[0-9.e+-]+|[+-]Inf|NaN)");
  std::map<std::string, double> samples;
  std::string family;
  size_t begin = 0;
  KJ_ASSERT(text.size() > 0 && text.back() == '\n', "the text ends with a newline");
  while (begin < text.size()) {
    auto end = text.find('\n', begin);
    auto line = text.substr(begin, end - begin);
    begin = end + 1;
    std::smatch m;
    if (std::regex_match(line, help)) continue;
    if (std::regex_match(line, m, type)) {
      family = m[1];
      continue;
    }
    KJ_ASSERT(std::regex_match(line, m, sample), "not a sample line", line);
    std::string name = m[1];
    KJ_ASSERT(name == family || name == family + "_bucket" || name == family + "_sum" ||
                  name == family + "_count",
              "a sample outside its family", line, family);
    auto space = line.rfind(' ');
    KJ_ASSERT(samples.count(line.substr(0, space)) == 0, "a sample twice", line);
    samples[line.substr(0, space)] = strtod(line.c_str() + space + 1, nullptr);
  }
  return samples;
}

double value(const std::map<std::string, double>& samples, const std::string& key) {
  auto found = samples.find(key);
  KJ_ASSERT(found != samples.end(), "no such sample", key);
  return found->second;
}

std::map<std::string, double> scrape(kj::StringPtr address) {
  auto reply = httpRequest(address, "GET", "/metrics");
  KJ_ASSERT(reply.status == 200, reply.headers, reply.body);
  KJ_ASSERT(reply.headers.find("Content-Type: text/plain; version=0.0.4") != std::string::npos,
            reply.headers);
  return parseMetrics(reply.body);
}

struct Ended {
  kj::String id;
  api::State state;
};

// Starts `argv` and waits for its end.
Ended runToEnd(RunnerdFixture& f, RunnerdFixture::Client& client,
               std::initializer_list<kj::StringPtr> argv) {
  auto started = startJob(f, client, argv);
  auto info = started.job.waitRequest().send().wait(f.io.waitScope);
  return {kj::mv(started.id), info.getInfo().getState()};
}

const kj::StringPtr METRICS_FLAGS[] = {"--metrics-listen=127.0.0.1:0"};

TEST(Monitoring, MetricsCountJobsByEndOwnersFollowersAndConnections) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);
  auto before = scrape(address);
  EXPECT_EQ(value(before, "runner_job_starts_total{executor=\"local\"}"), 0);
  EXPECT_EQ(value(before, "runner_jobs{state=\"running\",executor=\"local\"}"), 0);
  EXPECT_EQ(value(before, "runner_connections"), 0);
  EXPECT_EQ(value(before, "runner_executor_connections_up"), 1);

  auto alice = f.connect("alice");
  EXPECT_EQ(runToEnd(f, *alice, {"/bin/true"}).state, api::State::EXITED);
  EXPECT_EQ(runToEnd(f, *alice, {"/bin/sh", "-c", "exit 3"}).state, api::State::EXITED);
  EXPECT_EQ(runToEnd(f, *alice, {"/bin/sh", "-c", "kill -9 $$"}).state, api::State::KILLED);
  EXPECT_EQ(startJob(f, *alice, {"/no/such/command"}).state, api::State::FAILED);
  auto stopped = startJob(f, *alice, {"/bin/sleep", "100"});
  auto stop = stopped.job.stopRequest();
  stop.setGraceMillis(0);
  stop.send().wait(f.io.waitScope);
  EXPECT_EQ(stopped.job.waitRequest().send().wait(f.io.waitScope).getInfo().getState(),
            api::State::STOPPED);
  // 100,000 bytes of output, read whole by one follower.
  auto printed = runToEnd(f, *alice, {"/bin/sh", "-c", "head -c 100000 /dev/zero"});
  EXPECT_EQ(readLogs(f, *alice, printed.id).size(), 100000u);
  auto bob = f.connect("bob");
  auto running = startJob(f, *bob, {"/bin/sleep", "100"});
  auto running2 = startJob(f, *bob, {"/bin/sleep", "100"});

  auto m = scrape(address);
  EXPECT_EQ(value(m, "runner_job_starts_total{executor=\"local\"}"), 8);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"exited\"}"), 3);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"killed\"}"), 1);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"stopped\"}"), 1);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"failed\"}"), 1);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"lost\"}"), 0);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"oom\"}"), 0);
  EXPECT_EQ(value(m, "runner_jobs{state=\"running\",executor=\"local\"}"), 2);
  EXPECT_EQ(value(m, "runner_jobs{state=\"exited\",executor=\"local\"}"), 3);
  EXPECT_EQ(value(m, "runner_jobs{state=\"killed\",executor=\"local\"}"), 1);
  EXPECT_EQ(value(m, "runner_jobs{state=\"stopped\",executor=\"local\"}"), 1);
  EXPECT_EQ(value(m, "runner_jobs{state=\"failed\",executor=\"local\"}"), 1);
  // The jobs that ran (not the failed start) were timed, each in some bucket.
  EXPECT_EQ(value(m, "runner_job_start_duration_seconds_count"), 7);
  EXPECT_EQ(value(m, "runner_job_start_duration_seconds_bucket{le=\"+Inf\"}"), 7);
  EXPECT_GT(value(m, "runner_job_start_duration_seconds_sum"), 0);
  EXPECT_EQ(value(m, "runner_owner_running_jobs{owner=\"bob\"}"), 2);
  EXPECT_EQ(m.count("runner_owner_running_jobs{owner=\"alice\"}"), 0u) << "alice runs none";
  EXPECT_EQ(value(m, "runner_follower_bytes_total"), 100000);
  EXPECT_EQ(value(m, "runner_followers"), 0);
  EXPECT_EQ(value(m, "runner_connections"), 2);
  EXPECT_GE(value(m, "runner_connections_accepted_total"), 2);
  // Every start and end was a transaction of the store (some shared one).
  EXPECT_GT(value(m, "runner_store_commit_duration_seconds_count"), 0);
  EXPECT_GT(value(m, "runner_process_open_fds"), 0);
  EXPECT_GT(value(m, "runner_process_resident_memory_bytes"), 1e6);

  // A follower at work counts while it waits for more output.
  auto collector = kj::heap<Collector>();
  auto get = bob->manager.getRequest();
  get.setId(running.id);
  auto watch = get.send().getJob().watchOutputRequest();
  watch.setSink(kj::mv(collector));
  watch.setFollow(true);
  auto subscription = watch.send().wait(f.io.waitScope);
  EXPECT_EQ(value(scrape(address), "runner_followers"), 1);
}

// The kernel's OOM killer ends a job of the cgroup executor: its end counts as `oom`.
TEST(Monitoring, AnOomKilledJobEndsAsOom) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  if (!contains(f.serverLog(), "executors local, cgroup run their jobs")) {
    GTEST_SKIP() << "the supervisor serves no cgroup executor on this host";
  }
  auto alice = f.connect("alice");
  auto request = alice->manager.startRequest();
  auto spec = request.initSpec();
  spec.setCommand("/bin/sh");
  auto args = spec.initArgs(2);
  args.set(0, "-c");
  args.set(1, "exec tail /dev/zero");
  spec.setExecutor("cgroup");
  spec.initLimits().setMemoryBytes(32 << 20);
  auto started = request.send().wait(f.io.waitScope);
  auto end = started.getJob().waitRequest().send().wait(f.io.waitScope).getInfo();
  ASSERT_TRUE(end.getOomKilled()) << "the job was not OOM-killed";
  auto m = scrape(metricsAddress(f));
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"oom\"}"), 1);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"killed\"}"), 0);
  EXPECT_EQ(value(m, "runner_job_starts_total{executor=\"cgroup\"}"), 1);
  EXPECT_EQ(value(m, "runner_jobs{state=\"killed\",executor=\"cgroup\"}"), 1);
}

// A restarted runnerd shows the jobs its store keeps; its counters start again from zero.
TEST(Monitoring, AfterARestartJobsComeFromTheStoreAndCountersFromZero) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  {
    auto alice = f.connect("alice");
    runToEnd(f, *alice, {"/bin/true"});
    runToEnd(f, *alice, {"/bin/sh", "-c", "exit 1"});
    startJob(f, *alice, {"/bin/sleep", "100"});
  }
  f.stop();
  f.start();
  auto m = scrape(metricsAddress(f));
  EXPECT_EQ(value(m, "runner_jobs{state=\"exited\",executor=\"local\"}"), 2);
  EXPECT_EQ(value(m, "runner_jobs{state=\"running\",executor=\"local\"}"), 1);
  EXPECT_EQ(value(m, "runner_owner_running_jobs{owner=\"alice\"}"), 1);
  EXPECT_EQ(value(m, "runner_job_starts_total{executor=\"local\"}"), 0);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"exited\"}"), 0);
}

TEST(Monitoring, RefusedHandshakesAreCountedByReason) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);
  // A TCP probe: connects to the TLS port and closes.
  close(connectTcp(f.address()));
  // Plain HTTP to the TLS port.
  int fd = connectTcp(f.address());
  const char get[] = "GET / HTTP/1.1\r\n\r\n";
  KJ_ASSERT(write(fd, get, sizeof(get) - 1) == sizeof(get) - 1);
  readAll(fd);
  close(fd);
  std::map<std::string, double> m;
  for (int i = 0; i < 200; i++) {
    m = scrape(address);
    if (value(m, "runner_tls_handshakes_refused_total{reason=\"silent\"}") +
            value(m, "runner_tls_handshakes_refused_total{reason=\"protocol\"}") >=
        2) {
      break;
    }
    usleep(10000);
  }
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"silent\"}"), 1);
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"disconnected\"}"), 0);
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"protocol\"}"), 1);
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"other\"}"), 0);
  EXPECT_EQ(value(m, "runner_connections_accepted_total"), 2);
  // The probe is not logged; plain HTTP is.
  auto log = f.serverLog();
  EXPECT_TRUE(contains(log, "failed: http request")) << log.cStr();
  EXPECT_FALSE(contains(log, "SSL unable")) << log.cStr();
  EXPECT_FALSE(contains(log, tls::CLOSED_SILENT)) << log.cStr();
}

// Clients the handshake refuses, each counted under its reason.
TEST(Monitoring, RefusedCertificatesAreCountedAsBadOrRevoked) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);
  f.issue("carol", -7200, -3600);  // expired
  f.issueFromOtherCa("mallory");
  f.revoke("bob");
  // The reload reads the key as runnerd's daemon user.
  KJ_SYSCALL(chmod(f.keyPath("server").cStr(), 0644));
  KJ_SYSCALL(kill(f.pid(), SIGHUP));
  f.waitForLog("reloaded on SIGHUP");
  for (auto user : {"carol", "mallory", "bob"}) {
    auto e = kj::runCatchingExceptions([&]() {
      auto client = f.connect(user);
      client->manager.whoamiRequest().send().wait(f.io.waitScope);
    });
    EXPECT_NE(e, nullptr) << user << " was let in";
  }
  std::map<std::string, double> m;
  for (int i = 0; i < 200; i++) {
    m = scrape(address);
    if (value(m, "runner_tls_handshakes_refused_total{reason=\"bad_certificate\"}") +
            value(m, "runner_tls_handshakes_refused_total{reason=\"revoked\"}") >=
        3) {
      break;
    }
    usleep(10000);
  }
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"bad_certificate\"}"), 2);
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"revoked\"}"), 1);
  EXPECT_EQ(value(m, "runner_tls_handshakes_refused_total{reason=\"other\"}"), 0);
}

TEST(Monitoring, PromtoolAcceptsTheScrape) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  if (access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  }
  RunnerdFixture f(METRICS_FLAGS);
  auto alice = f.connect("alice");
  runToEnd(f, *alice, {"/bin/true"});
  auto running = startJob(f, *alice, {"/bin/sleep", "100"});
  // An owner whose name needs escaping in a label value.
  kj::StringPtr hostile = "ev\"il\\\xc3\xa9 }{,=";
  f.issue(hostile, -60, 3600);
  auto other = f.connect(hostile);
  auto hers = startJob(f, *other, {"/bin/sleep", "100"});
  ASSERT_EQ(hers.state, api::State::RUNNING) << hers.error.cStr();
  auto reply = httpRequest(metricsAddress(f), "GET", "/metrics");
  ASSERT_EQ(reply.status, 200);
  auto samples = parseMetrics(reply.body);
  EXPECT_EQ(value(samples, "runner_owner_running_jobs{owner=\"ev\\\"il\\\\\xc3\xa9 }{,=\"}"), 1);
  EXPECT_EQ(value(samples, "runner_owner_running_jobs{owner=\"alice\"}"), 1);
  auto path = kj::str(f.dir(), "/scrape.txt");
  FILE* file = fopen(path.cStr(), "w");
  ASSERT_NE(file, nullptr);
  fwrite(reply.body.data(), 1, reply.body.size(), file);
  fclose(file);
  auto command = kj::str("promtool check metrics < ", path, " 2>&1");
  FILE* pipe = popen(command.cStr(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string said;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) said.append(buffer, n);
  int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << said;
  EXPECT_EQ(said, "") << "promtool's findings";
}

// 200 short jobs start while a follower streams and another thread scrapes again and again:
// every scrape is valid and no counter goes down.
TEST(Monitoring, ScrapesDuringLoadAreValidAndCountersOnlyGrow) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);
  auto alice = f.connect("alice");
  auto printer = startJob(f, *alice,
                          {"/bin/sh", "-c",
                           "i=0; while [ $i -lt 100 ]; do head -c 40000 /dev/zero; "
                           "sleep 0.01; i=$((i+1)); done"});
  auto collector = kj::heap<Collector>();
  auto& collected = *collector;
  auto watch = printer.job.watchOutputRequest();
  watch.setSink(kj::mv(collector));
  watch.setFollow(true);
  auto subscription = watch.send();

  std::atomic<bool> done(false);
  std::atomic<int> scrapes(0);
  std::string failure;
  kj::Duration slowest = 0 * kj::SECONDS;
  std::thread scraper([&]() {
    std::map<std::string, double> previous;
    while (!done) {
      std::map<std::string, double> now;
      auto begun = kj::systemPreciseMonotonicClock().now();
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { now = scrape(address); })) {
        failure = e->getDescription().cStr();
        return;
      }
      slowest = kj::max(slowest, kj::systemPreciseMonotonicClock().now() - begun);
      for (auto& entry : now) {
        bool counter = entry.first.find("_total") != std::string::npos ||
                       entry.first.find("_bucket") != std::string::npos ||
                       entry.first.find("_count") != std::string::npos;
        auto was = previous.find(entry.first);
        if (counter && was != previous.end() && entry.second < was->second) {
          failure = entry.first + " went down from " + std::to_string(was->second) + " to " +
                    std::to_string(entry.second);
          return;
        }
      }
      previous = kj::mv(now);
      ++scrapes;
    }
  });
  KJ_DEFER({
    done = true;
    if (scraper.joinable()) scraper.join();
  });

  kj::Vector<kj::Promise<void>> waits;
  for (int batch = 0; batch < 10; batch++) {
    kj::Vector<capnp::RemotePromise<api::JobManager::StartResults>> starts;
    for (int i = 0; i < 20; i++) {
      auto request = alice->manager.startRequest();
      request.initSpec().setCommand("/bin/true");
      starts.add(request.send());
    }
    for (auto& start : starts) {
      auto response = start.wait(f.io.waitScope);
      waits.add(response.getJob().waitRequest().send().ignoreResult());
    }
  }
  kj::joinPromises(waits.releaseAsArray()).wait(f.io.waitScope);
  collected.whenEnded().wait(f.io.waitScope);
  done = true;
  scraper.join();
  EXPECT_EQ(failure, "");
  EXPECT_GT(scrapes.load(), 5);
  printf("%d scrapes during the load, the slowest %.1f ms\n", scrapes.load(),
         double(slowest / kj::MICROSECONDS) / 1000);
  auto m = scrape(address);
  EXPECT_EQ(value(m, "runner_job_starts_total{executor=\"local\"}"), 201);
  EXPECT_EQ(value(m, "runner_job_ends_total{cause=\"exited\"}"), 201);
  EXPECT_EQ(value(m, "runner_follower_bytes_total"), 4000000);
  EXPECT_EQ(collected.bytes.size(), 4000000u);
  // The follower is gone once runnerd has the answer to its `end`.
  for (int i = 0; i < 100 && value(m, "runner_followers") != 0; i++) {
    f.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(f.io.waitScope);
    m = scrape(address);
  }
  EXPECT_EQ(value(m, "runner_followers"), 0);
}

TEST(Monitoring, HealthzSaysOkThenWhyWhenTheSupervisorIsGone) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);
  auto healthy = httpRequest(address, "GET", "/healthz");
  EXPECT_EQ(healthy.status, 200);
  EXPECT_EQ(healthy.body, "ok\n");
  ASSERT_NE(f.supervisorPid(), 0) << "a root runnerd starts a supervisor";
  f.signalSupervisor(SIGKILL);
  HttpReply reply;
  for (int i = 0; i < 500; i++) {
    reply = httpRequest(address, "GET", "/healthz");
    if (reply.status != 200) break;
    usleep(10000);
  }
  EXPECT_EQ(reply.status, 503);
  EXPECT_NE(reply.body.find("the supervisor"), std::string::npos) << reply.body;
  EXPECT_EQ(std::count(reply.body.begin(), reply.body.end(), '\n'), 1) << "one line";
  EXPECT_EQ(value(scrape(address), "runner_executor_connections_up"), 0);
}

// A job's end waits for a frozen state disk: /healthz says so once the write has waited 5 s, and
// is ok again when the disk answers.
TEST(Monitoring, HealthzSaysTheStoreIsNotAnsweringWhileItsDiskIsFrozen) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  LoopDisk state;
  KJ_IF_MAYBE (reason, state.failure) {
    GTEST_SKIP() << reason->cStr();
  }
  auto stateFlag = kj::str("--state-dir=", state.mountPoint);
  kj::StringPtr flags[] = {stateFlag, METRICS_FLAGS[0]};
  RunnerdFixture f(flags);
  auto address = metricsAddress(f);
  auto alice = f.connect("alice");
  auto running = startJob(f, *alice, {"/bin/sleep", "100"});
  ASSERT_EQ(httpRequest(address, "GET", "/healthz").status, 200);

  state.freeze();
  {
    bool frozen = true;
    KJ_DEFER(if (frozen) state.thaw());
    auto stop = running.job.stopRequest();
    stop.setGraceMillis(1);
    auto stopping = stop.send().eagerlyEvaluate(nullptr);
    auto begun = kj::systemPreciseMonotonicClock().now();
    HttpReply reply;
    for (int i = 0; i < 100; i++) {
      f.io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(f.io.waitScope);
      reply = httpRequest(address, "GET", "/healthz");
      if (reply.status != 200) break;
    }
    auto waited = kj::systemPreciseMonotonicClock().now() - begun;
    EXPECT_EQ(reply.status, 503);
    EXPECT_NE(reply.body.find("the state store is not answering"), std::string::npos) << reply.body;
    EXPECT_GE(waited, 4 * kj::SECONDS);
    EXPECT_LT(waited, 8 * kj::SECONDS);
    // Scrapes answer meanwhile.
    EXPECT_GE(value(scrape(address), "runner_jobs{state=\"running\",executor=\"local\"}"), 1);
    state.thaw();
    frozen = false;
    stopping.wait(f.io.waitScope);
  }
  HttpReply reply;
  for (int i = 0; i < 100; i++) {
    reply = httpRequest(address, "GET", "/healthz");
    if (reply.status == 200) break;
    f.io.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).wait(f.io.waitScope);
  }
  EXPECT_EQ(reply.status, 200) << reply.body;
  f.stop();
}

TEST(Monitoring, OtherPathsAre404AndOtherMethods405) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);
  EXPECT_EQ(httpRequest(address, "GET", "/").status, 404);
  EXPECT_EQ(httpRequest(address, "GET", "/metrics/x").status, 404);
  EXPECT_EQ(httpRequest(address, "GET", "/metrics?name=x").status, 200);
  auto post = httpRequest(address, "POST", "/metrics");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.headers.find("Allow: GET"), std::string::npos) << post.headers;
  EXPECT_EQ(httpRequest(address, "DELETE", "/healthz").status, 405);
}

// Silent clients hold a slot for the request timeout (5 s) at most, and while all slots are
// held a new connection is closed at once rather than queued; an oversized request is cut off.
TEST(Monitoring, SlowAndGreedyClientsAreBoundedAndOthersServed) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f(METRICS_FLAGS);
  auto address = metricsAddress(f);

  int silent = connectTcp(address);
  KJ_DEFER(close(silent));
  // A client that sends its request a byte every 300 ms (slowloris) is cut off too.
  int trickle = connectTcp(address);
  KJ_DEFER(close(trickle));
  std::atomic<int64_t> trickleCutMillis(-1);
  std::thread trickler([&]() {
    auto since = kj::systemPreciseMonotonicClock().now();
    const char request[] = "GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; i < sizeof(request) - 1; i++) {
      if (readable(trickle, 300)) break;  // closed by the server
      if (write(trickle, request + i, 1) != 1) break;
    }
    if (readable(trickle, 10000)) {
      trickleCutMillis = (kj::systemPreciseMonotonicClock().now() - since) / kj::MILLISECONDS;
    }
  });
  KJ_DEFER(if (trickler.joinable()) trickler.join());
  // Another client is served meanwhile.
  auto begun = kj::systemPreciseMonotonicClock().now();
  EXPECT_EQ(httpRequest(address, "GET", "/healthz").status, 200);
  EXPECT_LT(kj::systemPreciseMonotonicClock().now() - begun, 1 * kj::SECONDS);

  // A request larger than 8 KiB: the connection is closed without an answer of 200.
  int greedy = connectTcp(address);
  KJ_DEFER(close(greedy));
  auto huge = kj::str("GET /metrics HTTP/1.1\r\nX-Padding: ", kj::repeat('a', 20000), "\r\n\r\n");
  (void)!write(greedy, huge.begin(), huge.size());
  auto answer = readAll(greedy, 3000);
  EXPECT_EQ(answer.find("200 OK"), std::string::npos) << answer.substr(0, 100);
  ASSERT_TRUE(readable(greedy, 3000)) << "the oversized request's connection stays open";

  // All 16 slots held by silent clients: the next is closed at once.
  kj::Vector<int> held;
  KJ_DEFER(for (int fd : held) close(fd));
  for (int i = 0; i < 16; i++) held.add(connectTcp(address));
  usleep(100000);
  int extra = connectTcp(address);
  KJ_DEFER(close(extra));
  ASSERT_TRUE(readable(extra, 1000)) << "a connection past the cap is closed at once";
  char byte;
  EXPECT_LE(read(extra, &byte, 1), 0);

  // Each silent client is dropped after the request timeout.
  ASSERT_TRUE(readable(silent, 7000)) << "a silent client is not dropped after 5 s";
  EXPECT_LE(read(silent, &byte, 1), 0);
  EXPECT_GE(kj::systemPreciseMonotonicClock().now() - begun, 4 * kj::SECONDS);
  trickler.join();
  EXPECT_GE(trickleCutMillis.load(), 4000) << "the trickling client was cut off early";
  EXPECT_LT(trickleCutMillis.load(), 7000) << "the trickling client was not cut off at 5 s";
  auto trickled = readAll(trickle, 100);
  EXPECT_EQ(trickled.find("200 OK"), std::string::npos) << trickled;
  auto heldSince = kj::systemPreciseMonotonicClock().now();
  for (int fd : held) {
    ASSERT_TRUE(readable(fd, 7000)) << "a silent client is not dropped after 5 s";
  }
  EXPECT_LT(kj::systemPreciseMonotonicClock().now() - heldSince, 6 * kj::SECONDS);
  auto m = scrape(address);
  EXPECT_GE(value(m, "runner_metrics_connections_refused_total"), 1);
}

// runnerd's output and exit status, run with `flags` on the fixture's files.
std::pair<std::string, int> runRunnerd(RunnerdFixture& f, kj::StringPtr flags) {
  auto command = kj::str(getenv("TEST_SRCDIR"), "/runner/runner/runnerd --listen=127.0.0.1:0",
                         " --tls-cert=", f.dir(), "/server.pem --tls-key=", f.dir(),
                         "/server-key.pem --tls-ca=", f.dir(), "/ca.pem --log-dir=", f.dir(),
                         "/logs --state-dir=", f.dir(), "/state --uid-range=", f.uidRangeFirst(),
                         "-", f.uidRangeFirst() + RunnerdFixture::UIDS - 1, " ", flags, " 2>&1");
  FILE* pipe = popen(command.cStr(), "r");
  KJ_ASSERT(pipe != nullptr);
  std::string said;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) said.append(buffer, n);
  return {said, pclose(pipe)};
}

TEST(Monitoring, AMetricsAddressThatCannotBeBoundIsOneLineAtStart) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  f.stop();
  int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_DEFER(close(busy));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  ASSERT_EQ(bind(busy, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(busy, 1), 0);
  socklen_t length = sizeof(sin);
  getsockname(busy, reinterpret_cast<sockaddr*>(&sin), &length);
  auto port = ntohs(sin.sin_port);

  auto taken = runRunnerd(f, kj::str("--metrics-listen=127.0.0.1:", port));
  EXPECT_NE(taken.second, 0);
  EXPECT_NE(taken.first.find(kj::str("--metrics-listen cannot listen on 127.0.0.1:", port,
                                     ": Address already in use: port ", port,
                                     " is in use by another process")
                                 .cStr()),
            std::string::npos)
      << taken.first;
  EXPECT_EQ(taken.first.find("listening on"), std::string::npos) << taken.first;
  auto empty = runRunnerd(f, "--metrics-listen=");
  EXPECT_NE(empty.second, 0);
  EXPECT_NE(empty.first.find("--metrics-listen needs HOST:PORT"), std::string::npos) << empty.first;
}

// The number of listening TCP sockets `pid` holds.
size_t listeningSockets(pid_t pid) {
  std::set<std::string> listening;
  for (auto table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    FILE* file = fopen(table, "r");
    if (file == nullptr) continue;
    char line[512];
    while (fgets(line, sizeof(line), file) != nullptr) {
      char state[8];
      unsigned long inode;
      if (sscanf(line, " %*s %*s %*s %7s %*s %*s %*s %*s %*s %lu", state, &inode) == 2 &&
          strcmp(state, "0A") == 0) {
        listening.insert(std::to_string(inode));
      }
    }
    fclose(file);
  }
  size_t count = 0;
  auto dir = kj::str("/proc/", pid, "/fd");
  for (int fd = 0; fd < 65536; fd++) {
    char target[64];
    auto link = kj::str(dir, "/", fd);
    ssize_t n = readlink(link.cStr(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    unsigned long inode;
    if (sscanf(target, "socket:[%lu]", &inode) == 1 && listening.count(std::to_string(inode))) {
      ++count;
    }
  }
  return count;
}

TEST(Monitoring, MetricsAreOffByDefault) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  {
    RunnerdFixture f;
    EXPECT_FALSE(contains(f.serverLog(), "metrics served"));
    EXPECT_EQ(listeningSockets(f.pid()), 1u) << "only the TLS port";
  }
  RunnerdFixture f(METRICS_FLAGS);
  EXPECT_EQ(listeningSockets(f.pid()), 2u) << "the TLS port and the metrics port";
}

}  // namespace
}  // namespace runner::testing

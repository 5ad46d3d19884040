#pragma once
// What the end-to-end tests of runnerd share: starting jobs, collecting their output as a client
// would, and reading errors, over RunnerdFixture's connections.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tests/runnerd-fixture.h"

namespace runner::testing {

#define SKIP_UNLESS_SERVER_CAN_RUN()                 \
  KJ_IF_MAYBE (reason, testing::cannotRunServer()) { \
    GTEST_SKIP() << reason->cStr();                  \
  }

// What `path` holds; what could be read of it when it goes away meanwhile, "" when it cannot be
// opened. For /proc/PID files of processes that may exit while they are read (read() fails with
// ESRCH then, which a std::ifstream turns into an exception).
inline std::string readWhatIsThere(const std::string& path) {
  std::string text;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  close(fd);
  return text;
}

// Collects a job's output as a client would.
class Collector final : public api::OutputSink::Server {
 public:
  kj::Vector<kj::byte> bytes;
  kj::Maybe<api::State> endState;
  // When set, write() never completes: a client that does not read.
  bool stall = false;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> stalled;

  kj::Promise<void> write(WriteContext context) override {
    bytes.addAll(context.getParams().getData());
    if (stall) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      stalled.add(kj::mv(paf.fulfiller));
      return kj::mv(paf.promise);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> end(EndContext context) override {
    endState = context.getParams().getInfo().getState();
    auto fulfillers = kj::mv(ended);
    for (auto& f : fulfillers) f->fulfill();
    return kj::READY_NOW;
  }

  kj::Promise<void> whenEnded() {
    if (endState != nullptr) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    ended.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  kj::String text() const { return kj::heapString(bytes.asPtr().asChars()); }

 private:
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> ended;
};

struct Started {
  api::Job::Client job;
  kj::String id;
  api::State state;
  kj::String error;
};

inline Started startJob(RunnerdFixture& f, RunnerdFixture::Client& client,
                 std::initializer_list<kj::StringPtr> argv) {
  auto request = client.manager.startRequest();
  auto spec = request.initSpec();
  auto it = argv.begin();
  spec.setCommand(*it++);
  auto args = spec.initArgs(argv.size() - 1);
  for (uint i = 0; it != argv.end(); ++it, ++i) args.set(i, *it);
  auto response = request.send().wait(f.io.waitScope);
  return {response.getJob(), kj::str(response.getInfo().getId()), response.getInfo().getState(),
          kj::str(response.getInfo().getError())};
}

// Runs `promise` and returns the error it fails with, or nullptr if it succeeds.
template <typename T>
kj::Maybe<kj::String> errorOf(RunnerdFixture& f, kj::Promise<T>&& promise) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { promise.wait(f.io.waitScope); })) {
    return kj::str(e->getDescription());
  }
  return nullptr;
}

inline bool contains(kj::StringPtr haystack, kj::StringPtr needle) {
  return strstr(haystack.cStr(), needle.cStr()) != nullptr;
}

inline api::JobInfo::Reader infoOf(RunnerdFixture& f, RunnerdFixture::Client& client, kj::StringPtr id,
                            kj::Own<capnp::Response<api::Job::InfoResults>>& keep) {
  auto request = client.manager.getRequest();
  request.setId(id);
  keep = kj::heap(request.send().getJob().infoRequest().send().wait(f.io.waitScope));
  return keep->getInfo();
}

// Reads a job's whole output through `client`; throws what the server throws.
inline kj::String readLogs(RunnerdFixture& f, RunnerdFixture::Client& client, kj::StringPtr id) {
  auto collector = kj::heap<Collector>();
  auto& c = *collector;
  auto get = client.manager.getRequest();
  get.setId(id);
  auto watch = get.send().getJob().watchOutputRequest();
  watch.setSink(kj::mv(collector));
  watch.setFromOffset(0);
  watch.setFollow(true);
  auto response = watch.send().wait(f.io.waitScope);
  c.whenEnded().wait(f.io.waitScope);
  return c.text();
}

inline int connectTcp(kj::StringPtr address, kj::StringPtr from = "127.0.0.1") {
  auto colon = KJ_ASSERT_NONNULL(address.findLast(':'));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(kj::str(address.slice(colon + 1)).parseAs<uint16_t>());
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  inet_pton(AF_INET, from.cStr(), &source.sin_addr);
  KJ_ASSERT(bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) == 0);
  KJ_ASSERT(::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0);
  return fd;
}

}  // namespace runner::testing

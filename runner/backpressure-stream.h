#pragma once
// BackpressureStream: a connection that stops reading while its writes are held up.
//
// Cap'n Proto queues every message it sends until the stream has taken it, without bound. A
// peer that sends calls and never reads the replies (50,000 pipelined `whoami`, say) would make
// the server queue ever more replies. Through this stream, the server reads nothing more from
// a peer while a write to it has not completed: what one read brought in is all the replies it
// can make the server hold. An asynchronous client (runctl, any KJ or Rust client) reads while
// it writes, so it never notices.

#include <kj/async-io.h>
#include <kj/function.h>

#include "runner/wakeup.h"

namespace runner {

class BackpressureStream final : public kj::AsyncIoStream {
 public:
  // `written` is called after each write has completed (the connection's queue shrank).
  BackpressureStream(kj::Own<kj::AsyncIoStream> inner, kj::Function<void()> written)
      : inner(kj::mv(inner)), written(kj::mv(written)) {}
  KJ_DISALLOW_COPY(BackpressureStream);

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override { inner->shutdownWrite(); }
  void abortRead() override { inner->abortRead(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override {
    inner->getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, kj::uint* length) override {
    inner->getpeername(addr, length);
  }

 private:
  kj::Own<kj::AsyncIoStream> inner;
  kj::Function<void()> written;
  kj::uint writesInProgress = 0;
  Wakeup writesDone;

  kj::Promise<void> counted(kj::Promise<void> writing);
};

}  // namespace runner

#include "client/output-sink.h"

#include <errno.h>
#include <kj/debug.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

namespace runner {
namespace client {

namespace {

class FdOutputSink final : public api::OutputSink::Server {
 public:
  FdOutputSink(int fd, kj::Own<kj::PromiseFulfiller<OutputEnd>> ended)
      : fd(fd), ended(kj::mv(ended)) {}
  KJ_DISALLOW_COPY(FdOutputSink);

  ~FdOutputSink() noexcept(false) {
    KJ_IF_MAYBE (fulfiller, ended) {
      (*fulfiller)->reject(KJ_EXCEPTION(DISCONNECTED, "the server ended the output stream early"));
    }
  }

 protected:
  kj::Promise<void> write(WriteContext context) override {
    KJ_REQUIRE(ended != nullptr, "output arrived after the end of the stream");
    auto data = context.getParams().getData();
    if (!writeAll(data)) {
      // The reader is gone: there is nobody left to deliver output to.
      finish(nullptr);
      return KJ_EXCEPTION(DISCONNECTED, "the reader of the output went away");
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> end(EndContext context) override {
    finish(kj::heap<OwnedJobInfo>(context.getParams().getInfo()));
    return kj::READY_NOW;
  }

 private:
  int fd;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<OutputEnd>>> ended;

  void finish(OutputEnd result) {
    KJ_IF_MAYBE (fulfiller, ended) {
      (*fulfiller)->fulfill(kj::mv(result));
      ended = nullptr;
    }
  }

  // Writes everything, through partial writes, EINTR and a non-blocking descriptor (stdout may
  // share its file description with a program that made it non-blocking). False on EPIPE.
  bool writeAll(kj::ArrayPtr<const kj::byte> data) {
    while (data.size() > 0) {
      ssize_t n = ::write(fd, data.begin(), data.size());
      if (n >= 0) {
        data = data.slice(n, data.size());
        continue;
      }
      int writeError = errno;
      if (writeError == EINTR) continue;
      if (writeError == EPIPE) return false;
      if (writeError == EAGAIN || writeError == EWOULDBLOCK) {
        struct pollfd pollFd = {fd, POLLOUT, 0};
        KJ_SYSCALL_HANDLE_ERRORS(poll(&pollFd, 1, -1)) {
          case EINTR:
            break;
          default:
            KJ_FAIL_SYSCALL("poll(output)", error);
        }
        continue;
      }
      auto exception = KJ_EXCEPTION(FAILED, kj::str("cannot write output: ", strerror(writeError)));
      KJ_IF_MAYBE (fulfiller, ended) {
        (*fulfiller)->reject(kj::cp(exception));
        ended = nullptr;
      }
      kj::throwFatalException(kj::mv(exception));
    }
    return true;
  }
};

}  // namespace

OwnedJobInfo::OwnedJobInfo(api::JobInfo::Reader info) {
  message.setRoot(info);
}

api::JobInfo::Reader OwnedJobInfo::get() {
  return message.getRoot<api::JobInfo>().asReader();
}

OutputWatch watchIntoFd(int fd) {
  auto paf = kj::newPromiseAndFulfiller<OutputEnd>();
  return {kj::heap<FdOutputSink>(fd, kj::mv(paf.fulfiller)), kj::mv(paf.promise)};
}

}  // namespace client
}  // namespace runner

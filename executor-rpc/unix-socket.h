#pragma once
// The Unix socket between runnerd and the process that runs its jobs: connecting, and a listener
// that lets in only one uid (SO_PEERCRED) and serves each admitted connection an
// ExecutorService, with descriptor passing.

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/function.h>
#include <sys/types.h>

#include "executor-rpc/executor-service.h"

namespace runner::executor_rpc {

// A connected stream socket; throws "cannot reach the executor host at PATH: REASON".
kj::AutoCloseFd connectUnixSocket(kj::StringPtr path);

// A listening stream socket at `path` with permissions `mode` (a stale socket there is replaced).
kj::AutoCloseFd listenUnixSocket(kj::StringPtr path, mode_t mode);

// Descriptors one launch carries: its output file.
constexpr uint MAX_FDS_PER_MESSAGE = 1;

class ExecutorListener {
 public:
  // Accepts on `listenFd` (non-blocking not required). A peer whose uid is not `allowedUid` is
  // refused: its connection is closed at once and `log` gets one line with its uid and pid.
  // `service` and `provider` must outlive the listener.
  ExecutorListener(kj::LowLevelAsyncIoProvider& provider, kj::UnixEventPort& eventPort,
                   kj::AutoCloseFd listenFd, uid_t allowedUid, ExecutorService& service,
                   kj::Function<void(kj::StringPtr)> log);
  ~ExecutorListener() noexcept(false);
  KJ_DISALLOW_COPY(ExecutorListener);

  // Accepts until cancelled.
  kj::Promise<void> run();

  // Connections open now.
  size_t connectionCount() const { return connections; }

  // The listening socket (to hand it to the image a re-exec starts).
  int fd() const { return listenFd.get(); }

 private:
  class Connection;
  kj::LowLevelAsyncIoProvider& provider;
  kj::AutoCloseFd listenFd;
  kj::UnixEventPort::FdObserver observer;
  uid_t allowedUid;
  ExecutorService& service;
  kj::Function<void(kj::StringPtr)> log;
  size_t connections = 0;
  class ErrorHandler final : public kj::TaskSet::ErrorHandler {
   public:
    explicit ErrorHandler(ExecutorListener& listener) : listener(listener) {}
    void taskFailed(kj::Exception&& e) override;

   private:
    ExecutorListener& listener;
  };
  ErrorHandler errorHandler;
  kj::TaskSet tasks;

  void admit(kj::AutoCloseFd fd);
};

}  // namespace runner::executor_rpc

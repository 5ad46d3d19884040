#include "executor-rpc/unix-socket.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace runner::executor_rpc {
namespace {

sockaddr_un unixAddress(kj::StringPtr path) {
  sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof(address.sun_path),
             kj::str("the socket path is too long (", path.size(), " bytes; at most ",
                     sizeof(address.sun_path) - 1, "): ", path));
  memcpy(address.sun_path, path.begin(), path.size());
  return address;
}

}  // namespace

kj::AutoCloseFd connectUnixSocket(kj::StringPtr path) {
  auto address = unixAddress(path);
  int fd;
  KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd owned(fd);
  // A Unix socket connects at once or not at all: nothing here waits on the network.
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
    KJ_FAIL_REQUIRE(kj::str("cannot reach the executor host at ", path, ": ", strerror(errno)));
  }
  return owned;
}

kj::AutoCloseFd listenUnixSocket(kj::StringPtr path, mode_t mode) {
  auto address = unixAddress(path);
  int fd;
  KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  kj::AutoCloseFd owned(fd);
  struct stat st;
  if (lstat(path.cStr(), &st) == 0) {
    KJ_REQUIRE(S_ISSOCK(st.st_mode), kj::str("not a socket, left in place: ", path));
    KJ_SYSCALL(unlink(path.cStr()), path);
  }
  KJ_SYSCALL(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), path);
  KJ_SYSCALL(chmod(path.cStr(), mode), path);
  KJ_SYSCALL(listen(fd, 64), path);
  return owned;
}

// One admitted client: its RPC system serves a fresh ExecutorHost of the shared service.
class ExecutorListener::Connection {
 public:
  Connection(ExecutorListener& listener, kj::Own<kj::AsyncCapabilityStream> stream)
      : listener(listener),
        stream(kj::mv(stream)),
        network(*this->stream, MAX_FDS_PER_MESSAGE, capnp::rpc::twoparty::Side::SERVER,
                receiveOptions()),
        rpcSystem(capnp::makeRpcServer(network, listener.service.newHost())) {
    ++listener.connections;
  }
  ~Connection() noexcept(false) { --listener.connections; }
  KJ_DISALLOW_COPY(Connection);

  kj::Promise<void> onDisconnect() { return network.onDisconnect(); }

 private:
  ExecutorListener& listener;
  kj::Own<kj::AsyncCapabilityStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;

  static capnp::ReaderOptions receiveOptions() {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = 4 * 1024 * 1024 / sizeof(capnp::word);
    return options;
  }
};

ExecutorListener::ExecutorListener(kj::LowLevelAsyncIoProvider& provider,
                                   kj::UnixEventPort& eventPort, kj::AutoCloseFd listenFd,
                                   uid_t allowedUid, ExecutorService& service,
                                   kj::Function<void(kj::StringPtr)> log)
    : provider(provider),
      listenFd(kj::mv(listenFd)),
      observer(eventPort, this->listenFd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
      allowedUid(allowedUid),
      service(service),
      log(kj::mv(log)),
      errorHandler(*this),
      tasks(errorHandler) {
  int flags;
  KJ_SYSCALL(flags = fcntl(this->listenFd.get(), F_GETFL));
  KJ_SYSCALL(fcntl(this->listenFd.get(), F_SETFL, flags | O_NONBLOCK));
}

ExecutorListener::~ExecutorListener() noexcept(false) {}

void ExecutorListener::ErrorHandler::taskFailed(kj::Exception&& e) {
  listener.log(kj::str("connection failed: ", e.getDescription()));
}

kj::Promise<void> ExecutorListener::run() {
  for (;;) {
    int fd = accept4(listenFd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      admit(kj::AutoCloseFd(fd));
      continue;
    }
    int error = errno;
    if (error == EINTR || error == ECONNABORTED) continue;
    if (error == EAGAIN || error == EWOULDBLOCK) break;
    // Out of descriptors or memory: try again when the next client knocks.
    log(kj::str("cannot accept a connection: ", strerror(error)));
    break;
  }
  return observer.whenBecomesReadable().then([this]() { return run(); });
}

void ExecutorListener::admit(kj::AutoCloseFd fd) {
  struct ucred peer;
  socklen_t length = sizeof(peer);
  if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0) {
    log(kj::str("refused a connection: cannot read its credentials: ", strerror(errno)));
    return;
  }
  if (peer.uid != allowedUid) {
    log(kj::str("refused a connection from uid ", peer.uid, " pid ", peer.pid, ": only uid ",
                allowedUid, " may use this socket"));
    return;
  }
  log(kj::str("accepted a connection from uid ", peer.uid, " pid ", peer.pid));
  auto stream =
      provider.wrapUnixSocketFd(fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                  kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                  kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
  auto connection = kj::heap<Connection>(*this, kj::mv(stream));
  auto disconnected = connection->onDisconnect();
  tasks.add(disconnected.attach(kj::mv(connection)).then([this, pid = peer.pid]() {
    log(kj::str("connection from pid ", pid, " closed"));
  }));
}

}  // namespace runner::executor_rpc

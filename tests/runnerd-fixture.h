#pragma once
// A real runnerd for end-to-end tests: certificates made for the test (a CA, the server, and
// the users alice, bob and admin), fresh log and state directories, the server as a child
// process on an ephemeral loopback port, and clients that connect over mutual TLS.

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <sys/types.h>

#include "schema/runner.capnp.h"
#include "tls/tls-config.h"

namespace runner::testing {

// Why end-to-end tests cannot run here, or nullptr when they can.
kj::Maybe<kj::String> cannotRunServer();

class RunnerdFixture {
 public:
  // `extraFlags` are appended to runnerd's command line at every start, e.g.
  // {"--executor=cgroup"}. `withoutFlags` names flags of the fixture's own (e.g. "admin") left
  // off that command line, for a test whose --config file is to give them.
  explicit RunnerdFixture(kj::ArrayPtr<const kj::StringPtr> extraFlags = nullptr,
                          kj::ArrayPtr<const kj::StringPtr> withoutFlags = nullptr);
  ~RunnerdFixture() noexcept(false);
  KJ_DISALLOW_COPY(RunnerdFixture);

  // Starts runnerd (again, on the same directories, after stop()).
  void start();
  // SIGTERM, then waits for it to exit.
  void stop();
  // SIGKILL, as a crash would, then reaps it; its jobs are left as they are.
  void crash();

  // Lowers runnerd's descriptor limit (soft and hard) from outside, as runnerd's own user: root
  // here may lack CAP_SYS_RESOURCE, and runnerd is not root's.
  void lowerDescriptorLimit(uint64_t limit);

  // The supervisor a root runnerd started (its pid file under the state directory), or 0.
  pid_t supervisorPid() const;
  // Sends `signal` to the supervisor and, for SIGTERM and SIGKILL, waits until it is gone.
  void signalSupervisor(int signal);

  kj::StringPtr dir() const { return root; }

  // runnerd's --uid-range is [firstUid, firstUid + UIDS): its own, unless extraFlags name one.
  static constexpr uint32_t UIDS = 1000;
  uint32_t uidRangeFirst() const { return firstUid; }
  kj::StringPtr address() const { return addr; }
  pid_t pid() const { return serverPid; }

  // Paths of a user's certificate and key, and of the CA.
  kj::String certPath(kj::StringPtr user) const;
  kj::String keyPath(kj::StringPtr user) const;
  kj::String caPath() const;

  // Issues a certificate for `user` from the test CA with the given validity (seconds from now).
  void issue(kj::StringPtr user, int64_t notBeforeOffset, int64_t notAfterOffset);
  // Adds `user`'s certificate to the CA's revocation list (runnerd's --tls-crl), which runnerd
  // reads again on SIGHUP.
  void revoke(kj::StringPtr user);
  // Issues a certificate for `user` from a different CA.
  void issueFromOtherCa(kj::StringPtr user);

  // Everything runnerd wrote to stderr so far.
  kj::String serverLog() const;

  // runnerd's resident memory (VmRSS) in KiB, and its open descriptors.
  size_t serverRssKib() const;
  size_t serverDescriptors() const;

  // Runs the event loop until runnerd has logged a line containing `text` (waiting up to 10 s).
  void waitForLog(kj::StringPtr text) const;

  kj::AsyncIoContext io;

  // One client connection, authenticated as a user.
  class Client {
   public:
    Client(RunnerdFixture& fixture, kj::StringPtr user);
    KJ_DISALLOW_COPY(Client);
    api::JobManager::Client manager = nullptr;

   private:
    kj::Own<tls::ClientTls> tls;
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<capnp::TwoPartyClient> rpc;
  };

  kj::Own<Client> connect(kj::StringPtr user) { return kj::heap<Client>(*this, user); }

 private:
  kj::String root;
  kj::Array<kj::String> extraFlags;
  kj::Array<kj::String> withoutFlags;
  uint32_t firstUid;
  kj::String addr;
  pid_t serverPid = 0;
  // How many times runnerd said it was listening, over all starts.
  size_t starts = 0;
};

}  // namespace runner::testing

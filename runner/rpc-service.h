#pragma once
// The RPC service: JobManager, Job and Subscription of schema/runner.capnp, on top of the job
// table.
//
// Authorization is decided when a capability is handed out: each connection gets one
// JobManager bound to its caller, and every Job it hands out knows whether the caller may
// control it (the owner or an admin) or only read its metadata.

#include <kj/refcount.h>

#include "runner/event-log.h"
#include "runner/job-table.h"
#include "schema/runner.capnp.h"

namespace runner {

// Who is on the other end of one connection. Shared by the capabilities of that connection.
class Caller final : public kj::Refcounted {
 public:
  Caller(kj::String user, bool admin, kj::String peer)
      : user(kj::mv(user)), admin(admin), peer(kj::mv(peer)) {}

  const kj::String user;
  const bool admin;
  // The peer's network address, for the log.
  const kj::String peer;

  // Output watches this connection holds open; bounded so that one client cannot pin
  // unbounded descriptors and buffers.
  uint activeWatches = 0;
};

// Open output watches allowed per connection.
constexpr uint MAX_WATCHES_PER_CONNECTION = 256;

// The bootstrap capability of one connection.
api::JobManager::Client newJobManager(JobTable& table, EventLog& log, kj::Own<Caller> caller);

}  // namespace runner

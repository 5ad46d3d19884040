#pragma once
// The RPC service: JobManager, Job and Subscription of schema/runner.capnp, on top of the job
// table.
//
// Authorization is decided when a capability is handed out: each connection gets one
// JobManager bound to its caller, and every Job it hands out knows whether the caller may
// control it (the owner or an admin) or only read its metadata.

#include <kj/async.h>
#include <kj/function.h>
#include <kj/refcount.h>
#include <kj/vector.h>

#include "runner/descriptor-gauge.h"
#include "runner/event-log.h"
#include "runner/job-table.h"
#include "runner/wakeup.h"
#include "schema/runner.capnp.h"

namespace runner {

// Output bytes a connection's watches may have sent and not yet seen acknowledged by the client.
// The capnp stream window over TLS is the socket's send buffer (up to 4 MiB on loopback) for
// each sink, so many watches on one connection would pin many times that; runner counts
// acknowledgements itself, per watch and per connection.
constexpr size_t CONNECTION_OUTPUT_WINDOW = 8 * 1024 * 1024;
// ... and what one watch may have in flight. A watch starts with the initial window, so that a
// client that never reads pins no more than that (plus the follower's one chunk); each time a
// whole window has been acknowledged it doubles, up to the maximum, so that a client that keeps
// up has several chunks on the way, as TCP's slow start does.
constexpr size_t WATCH_INITIAL_OUTPUT_WINDOW = 512 * 1024;
constexpr size_t WATCH_MAX_OUTPUT_WINDOW = 2 * 1024 * 1024;

// The unacknowledged output of one connection, and the watches waiting for it to shrink.
class OutputBudget {
 public:
  bool hasRoom() const { return inFlight < CONNECTION_OUTPUT_WINDOW; }
  void add(size_t bytes) { inFlight += bytes; }
  // Wakes every waiter: each checks its own window again.
  void release(size_t bytes);
  // Resolves at the next release().
  kj::Promise<void> nextRelease();

 private:
  size_t inFlight = 0;
  Wakeup released;
};

// Replies (and `end` calls to output sinks) are built only while the connection has less than this
// queued to send: a client that does not read them cannot make the server build more at once, as
// when a thousand waits on a job with 1 MiB of arguments all end together.
constexpr size_t REPLY_WINDOW = 2 * 1024 * 1024;

// What a connection and a user may hold (README's Limits; runnerd's flags set them).
struct ConnectionLimits {
  // Open output watches per connection and per user.
  uint watchesPerConnection = 256;
  uint watchesPerUser = 1024;
  // Job capabilities a connection may hold at once (each get() and start() makes one, and the
  // RPC system keeps it, and the answer it came in, until the client releases them).
  uint jobCapabilitiesPerConnection = 1024;
  // runnerd's descriptors as a whole; nullptr: not watched.
  DescriptorGauge* descriptors = nullptr;

  // Throws OVERLOADED when runnerd is close to its descriptor limit; otherwise counts `taking`.
  void requireDescriptors(uint64_t taking) const;
};

// Failed calls of one user (refused for permission, or failed inside the server) logged one by
// one per CALL_FAILURE_LOG_WINDOW; past that they are counted, and the user's first one logged
// after the window says how many were not.
constexpr size_t CALL_FAILURES_LOGGED_PER_WINDOW = 20;
constexpr kj::Duration CALL_FAILURE_LOG_WINDOW = 10 * kj::SECONDS;

// What one user holds over all of its connections. Shared by the Callers of that user.
struct UserUsage final : public kj::Refcounted {
  uint connections = 0;
  uint watches = 0;
  // Bytes of answers the user's clients have not finished (MeteredNetwork).
  size_t unfinishedBytes = 0;
  // Lines about the user's failed calls in the current window, and those not logged.
  size_t callFailuresLogged = 0;
  size_t callFailuresNotLogged = 0;
  kj::TimePoint callFailureWindowEnd = kj::origin<kj::TimePoint>();
};

// Who is on the other end of one connection. Shared by the capabilities of that connection.
class Caller final : public kj::Refcounted {
 public:
  Caller(kj::String user, bool admin, kj::String peer, kj::Own<UserUsage> usage,
         const ConnectionLimits& limits)
      : user(kj::mv(user)),
        admin(admin),
        peer(kj::mv(peer)),
        usage(kj::mv(usage)),
        limits(limits) {}

  const kj::String user;
  const bool admin;
  // The peer's network address, for the log.
  const kj::String peer;
  kj::Own<UserUsage> usage;
  const ConnectionLimits& limits;

  // Output watches this connection holds open; bounded so that one client cannot pin
  // unbounded descriptors and buffers.
  uint activeWatches = 0;
  uint jobCapabilities = 0;
  // Calls being served, and a count that moves whenever one begins or ends: a connection whose
  // count has not moved for a while, with no call and no watch, is idle.
  uint callsInProgress = 0;
  uint64_t activity = 0;

  OutputBudget output;

  // What the connection holds queued to send, set by the Server for the connection's life, and a
  // wakeup after each write to the socket.
  kj::Function<size_t()> queuedBytes = []() -> size_t { return 0; };
  Wakeup written;
  size_t unqueuedReplyBytes = 0;
  kj::Maybe<kj::Promise<void>> queueCheck;
  bool queueCheckPending = false;

  // Whether a reply may be built now: the connection has less than REPLY_WINDOW queued to send,
  // counting the replies built since the RPC system last queued what it had.
  bool hasRoomToReply() { return queuedBytes() + unqueuedReplyBytes < REPLY_WINDOW; }

  // Runs `build` once the connection has room, in the same turn as the check: it fills a reply
  // (or a call to the client) and returns its size in bytes, which counts at once. So that many
  // replies woken together (a thousand waits on one job that ends) do not all pass one check.
  kj::Promise<void> reply(kj::Function<size_t()> build) {
    if (hasRoomToReply()) {
      replyBuilt(build());
      return kj::READY_NOW;
    }
    return written.next().then(
        [this, build = kj::mv(build)]() mutable { return reply(kj::mv(build)); });
  }

  void replyBuilt(size_t bytes) {
    unqueuedReplyBytes += bytes;
    recheckQueue();
  }

  // After a write to the connection or a reply built: once everything ready has run, the RPC
  // system has queued the replies and counted the writes off its queue, and the replies waiting
  // for room look again.
  void recheckQueue() {
    if (queueCheckPending) return;
    queueCheckPending = true;
    // Replaces the previous check, which has run (never from within it).
    queueCheck = kj::evalLast([this]() {
                   queueCheckPending = false;
                   unqueuedReplyBytes = 0;
                   written.fire();
                 }).eagerlyEvaluate(nullptr);
  }

  bool isIdleSince(uint64_t lastActivity) const {
    return callsInProgress == 0 && activeWatches == 0 && activity == lastActivity;
  }

  // Counts `call` as in progress until it resolves or is cancelled.
  template <typename T>
  kj::Promise<T> track(kj::Promise<T> call) {
    ++callsInProgress;
    ++activity;
    return call.attach(kj::defer([self = kj::addRef(*this)]() mutable {
      --self->callsInProgress;
      ++self->activity;
    }));
  }
};


// The bootstrap capability of one connection.
api::JobManager::Client newJobManager(JobTable& table, EventLog& log, kj::Own<Caller> caller);

}  // namespace runner

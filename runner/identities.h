#pragma once
// Who a job runs as: the Unix identity of each owner (the common name of a client certificate).
//
// Authorization that the RPC layer enforces must not be undone from inside a job: a job that
// shares its uid with another owner's job can read that job's environment and memory, trace it,
// signal it and take its descriptors. So each owner gets an identity of its own, in one of three
// modes (runnerd --users):
//  - dynamic: a uid, and a gid of the same number, from a configured range, assigned on the
//    owner's first start and kept in the job store forever (a uid never goes to a second owner),
//    with a private home <homes>/<uid> (0700). No passwd entry is needed.
//  - accounts: the local account of the same name, above a minimum uid.
//  - shared: every job as one user (--run-as, or runnerd's own user when it is not root). This
//    gives no isolation between owners and is meant for single-tenant use.

#include <kj/async.h>
#include <kj/io.h>
#include <kj/map.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <stdint.h>

#include "executors/executor.h"
#include "runner/event-log.h"

namespace runner {

class Store;

struct UidRange {
  uint32_t first = 0;
  uint32_t last = 0;

  bool contains(uint32_t id) const { return first <= id && id <= last; }
};

// Above the ranges that useradd gives to accounts (up to 60000) and to subordinate ids
// (/etc/subuid, up to 600,100,000 by default), above systemd's container ranges, below 2^31
// (some tools take uids as signed): room for a million owners.
constexpr UidRange DEFAULT_UID_RANGE = {2000000000u, 2000999999u};

// systemd's range for DynamicUser= services; a range that overlaps it is refused.
constexpr UidRange SYSTEMD_DYNAMIC_USERS = {61184, 65519};

// "FIRST-LAST", both included; nullptr for text that is not such a range, or an empty one, or
// one that includes 0 or the ids that mean "none" (65535, 4294967295).
kj::Maybe<UidRange> parseUidRange(kj::StringPtr text);

// The texts of the files whose ids a uid range must stay clear of (empty for a missing file).
struct HostIdFiles {
  kj::String passwd;
  kj::String group;
  kj::String subuid;
  kj::String subgid;
};

// Reads /etc/passwd, /etc/group, /etc/subuid and /etc/subgid.
HostIdFiles readHostIdFiles();

// nullptr when no id of `range` is an account in `files.passwd`, a group in `files.group`, in a
// subordinate range of `files.subuid` or `files.subgid`, or in systemd's dynamic-user range;
// otherwise one line naming the first overlap found.
kj::Maybe<kj::String> findUidRangeConflict(UidRange range, const HostIdFiles& files);

// Where the runnerds of a host register the uid ranges they use.
constexpr kj::StringPtr UID_RANGE_REGISTRY = "/run/runner/uid-ranges"_kj;

// Claims `range` for this process among the runnerds of this host, so that two of them (a
// quickstart beside a production one, say) never give one uid to two owners: a file named after
// the range in `registry`, holding `stateDir`, locked for as long as the returned descriptor is
// open. Claims whose lock nobody holds (their runnerd is gone) are removed. Throws one line
// naming the other runnerd's state directory when a live runnerd holds an overlapping range.
kj::AutoCloseFd claimUidRange(UidRange range, kj::StringPtr stateDir,
                              kj::StringPtr registry = UID_RANGE_REGISTRY);

// A name as useradd accepts it: [a-z_][a-z0-9_-]*[$]? (capitals and dots allowed too), at most
// 32 characters.
bool isPortableUserName(kj::StringPtr name);

class OwnerIdentities {
 public:
  virtual ~OwnerIdentities() noexcept(false) = default;

  // The identity `owner`'s jobs run as, with its user name (for USER and LOGNAME) and home (for
  // HOME, and the default working directory). Throws one line when `owner` cannot be mapped;
  // then nothing was created for it.
  virtual executors::Credentials forOwner(kj::StringPtr owner) = 0;

  // Makes ready, off the event loop, what forOwner(owner) would otherwise wait for the disk to
  // make (a new owner's uid, assigned durably, and its home): once this resolves, forOwner(owner)
  // answers at once. Rejects with the error forOwner would throw. Call on the event loop.
  virtual kj::Promise<void> prepare(kj::StringPtr owner) { return kj::READY_NOW; }

  // For runnerd's start-up line, e.g. "dynamic uids 2000000000-2000999999".
  virtual kj::String describe() const = 0;

  // Whether each owner's home is made by the supervisor as it launches the job (so it may not
  // exist yet when the job is asked for).
  virtual bool homesMadeAtLaunch() const { return false; }
};

// Every owner as `credentials` (--run-as, or runnerd's own user).
kj::Own<OwnerIdentities> newSharedIdentity(executors::Credentials credentials);

// Each owner as the local account of the same name; root, accounts below `minUid`, nobody
// and members of group root are refused.
kj::Own<OwnerIdentities> newAccountIdentities(uint32_t minUid);

// Each owner as a uid of its own from `range` (assigned through `store`), with gid = uid, no
// supplementary groups, and the home `homesDir`/<uid>, created 0700 and owned by the uid on the
// owner's first start. A uid whose home already exists without an assignment (a store that was
// replaced) is retired, logged, and skipped. Needs root, unless `makeHomes` is false: then the
// supervisor makes each home when it launches the job.
kj::Own<OwnerIdentities> newDynamicIdentities(Store& store, UidRange range, kj::String homesDir,
                                              EventLog& log, bool makeHomes = true);

// A copy of `credentials`.
executors::Credentials cloneCredentials(const executors::Credentials& credentials);

}  // namespace runner

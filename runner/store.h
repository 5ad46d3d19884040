#pragma once
// Store: the SQLite database (WAL) under runnerd's state directory that keeps the current
// JobRecord of every job and every state change it went through, so that a restarted
// runnerd still answers for every job it keeps (retention may forget old ended jobs).
//
// A Store's calls are synchronous and may wait for the disk: every commit is durable (WAL with
// synchronous=FULL, so the commit returns once the log is on disk). A running server therefore
// calls it from StoreWriter's thread, which commits many writes in one transaction (one sync),
// and from the event loop only while starting up. Its calls are serialized by a lock, so that
// the rare synchronous call of a running server (assignOwnerUid) is safe beside the writer.

#include <kj/function.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <stdint.h>

#include <mutex>

#include "runner/job-record.h"

namespace runner {

namespace sqlite {
class Database;
class Statement;
}  // namespace sqlite

// One state change of a job, as recorded in the `job_events` table.
struct EventRow {
  // Unix time in milliseconds when the job entered `state`.
  int64_t at = 0;
  JobState state = JobState::RUNNING;
  // A short human-readable note: "pid 123", "exit code 1", "signal 9", the error text...
  kj::String detail;
};

// One row of the owner → uid assignments of dynamic mode.
struct OwnerUid {
  uint32_t uid = 0;
  // Null for a retired uid, which is never assigned.
  kj::Maybe<kj::String> owner;
};

// One write of a batch given to Store::apply().
struct StoreWrite {
  enum class Kind { INSERT, UPDATE, FORGET };
  Kind kind;
  // The job's record; for FORGET only its id counts.
  JobRecord record;
};

class Store {
 public:
  // The schema version this code writes, kept in `PRAGMA user_version`.
  static constexpr int SCHEMA_VERSION = 6;

  // The error given to a job that was running in runnerd's own process when runnerd went away,
  // and is gone now.
  static constexpr kj::StringPtr LOST_ERROR =
      "runnerd stopped while the job was running; its end was not observed"_kj;

  // Opens the database at `path`, creating it (and its tables) when it does not exist. The
  // parent directory must exist and be writable (WAL keeps two files beside the database).
  // Throws a one-line error naming `path` for a missing or read-only directory, a file that
  // is not an SQLite database, or a database written by a newer schema version.
  static kj::Own<Store> open(kj::StringPtr path);

  // Use open().
  explicit Store(kj::Own<sqlite::Database> database);
  ~Store() noexcept(false);
  KJ_DISALLOW_COPY(Store);

  // Stores a new job and records its initial state as its first event. The id must not be
  // stored yet; no string may contain a NUL byte.
  void insert(const JobRecord& record);

  // Replaces the stored record with the same id by `record` (every field). When the state
  // differs from the stored one, appends an event for the new state, so each state change is
  // recorded exactly once however often a record is rewritten. The id must be stored, with
  // the same owner (a job's owner never changes).
  void update(const JobRecord& record);

  // Removes the job with this id and its events (a job its owner's retention let go).
  void forget(kj::StringPtr id);

  // Group commit: applies `writes` in order, as insert(), update() and forget() would, in one
  // transaction and so with one sync of the disk. A write that fails (a missing id, a NUL byte)
  // is undone alone and its exception returned at its index; the others still commit. Throws
  // when the transaction itself cannot begin or commit, and then nothing of it is stored.
  kj::Array<kj::Maybe<kj::Exception>> apply(kj::ArrayPtr<const StoreWrite> writes);

  // Every stored job, in the order they were inserted.
  kj::Vector<JobRecord> loadAll();

  // The job with this id, or nullptr.
  kj::Maybe<JobRecord> find(kj::StringPtr id);

  // The state changes of the job with this id, oldest first (empty for an unknown id).
  kj::Vector<EventRow> events(kj::StringPtr id);


  // The uid assigned to `owner` (dynamic identities), if any.
  kj::Maybe<uint32_t> ownerUid(kj::StringPtr owner);

  // The uid of `owner`: the one assigned before, or else the lowest uid of [first, last] that was
  // never assigned nor retired, assigned now and durably (the commit waits for the disk, and for
  // a batch of StoreWriter's being committed).
  // A candidate for which `usable` says false is retired instead and the next one tried.
  // nullptr when the range has no uid left. Assignments are never removed, so a uid is never
  // given to a second owner.
  kj::Maybe<uint32_t> assignOwnerUid(kj::StringPtr owner, uint32_t first, uint32_t last,
                                     kj::FunctionParam<bool(uint32_t)> usable);

  // Every assignment, retired uids included, by uid.
  kj::Vector<OwnerUid> ownerUids();

 private:
  // Held by every public call: StoreWriter's thread and the event loop share the connection.
  std::recursive_mutex mutex;
  kj::Own<sqlite::Database> db;
  kj::Own<sqlite::Statement> begin;
  kj::Own<sqlite::Statement> commit;
  kj::Own<sqlite::Statement> insertJob;
  kj::Own<sqlite::Statement> updateJob;
  kj::Own<sqlite::Statement> selectState;
  kj::Own<sqlite::Statement> deleteJob;
  kj::Own<sqlite::Statement> deleteEvents;
  kj::Own<sqlite::Statement> insertEvent;
  kj::Own<sqlite::Statement> selectAll;
  kj::Own<sqlite::Statement> selectOne;
  kj::Own<sqlite::Statement> selectEvents;
  kj::Own<sqlite::Statement> selectOwnerUid;
  kj::Own<sqlite::Statement> selectFreeUid;
  kj::Own<sqlite::Statement> insertOwnerUid;
  kj::Own<sqlite::Statement> selectOwnerUids;
  kj::Own<sqlite::Statement> savepoint;
  kj::Own<sqlite::Statement> release;
  kj::Own<sqlite::Statement> rollbackTo;

  class Transaction;

  // Without a transaction of their own.
  void writeInsert(const JobRecord& record);
  void write(const JobRecord& record);
  void writeForget(kj::StringPtr id);
};

}  // namespace runner

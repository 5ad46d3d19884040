#include "runner/store.h"

#include <errno.h>
#include <kj/debug.h>
#include <kj/time.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executors/spawn.h"
#include "runner/sqlite.h"

namespace runner {

// BEGIN IMMEDIATE ... COMMIT; rolls back when destroyed uncommitted (an exception).
class Store::Transaction {
 public:
  explicit Transaction(Store& store) : store(store) { store.begin->run(); }
  ~Transaction() noexcept(false) {
    if (!committed) {
      // Errors are ignored: an exception is in flight, and a failed rollback means sqlite has
      // already rolled back.
      sqlite3_exec(store.db->get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  KJ_DISALLOW_COPY(Transaction);

  void commit() {
    store.commit->run();
    committed = true;
  }

 private:
  Store& store;
  bool committed = false;
};

namespace {

// The columns of `jobs` besides `seq`, in the order every statement binds and reads them.
enum Column : int {
  ID,
  OWNER,
  COMMAND,
  ARGS,
  WORKING_DIR,
  EXECUTOR,
  STATE,
  EXIT_CODE,
  TERM_SIGNAL,
  OOM_KILLED,
  OOM_KILLED_MAIN,
  ERROR,
  CREATED_AT,
  STARTED_AT,
  ENDED_AT,
  CPU_MILLICORES,
  MEMORY_BYTES,
  IO_READ_BYTES_PER_SEC,
  IO_WRITE_BYTES_PER_SEC,
  PIDS_LIMIT,
  ISOLATE_PID,
  ISOLATE_MOUNT,
  ISOLATE_NET,
  CPU_USER_MICROS,
  CPU_SYSTEM_MICROS,
  PEAK_MEMORY_BYTES,
  CGROUP_VERSION,
  CGROUP_PATH,
  IO_DEVICE,
  PID,
  PID_START_TIME,
  UID,
  GID,
  MAX_OUTPUT_BYTES,
  OUTPUT_BYTES,
  NAME,
  LABELS,
  TIMEOUT_MILLIS,
  IDLE_TIMEOUT_MILLIS,
  END_REASON,
  OUTPUT_TIMES,
  COLUMN_COUNT
};

const kj::StringPtr COLUMN_NAMES[] = {
    "id",
    "owner",
    "command",
    "args",
    "working_dir",
    "executor",
    "state",
    "exit_code",
    "term_signal",
    "oom_killed",
    "oom_killed_main",
    "error",
    "created_at",
    "started_at",
    "ended_at",
    "cpu_millicores",
    "memory_bytes",
    "io_read_bytes_per_sec",
    "io_write_bytes_per_sec",
    "pids_limit",
    "isolate_pid",
    "isolate_mount",
    "isolate_net",
    "cpu_user_micros",
    "cpu_system_micros",
    "peak_memory_bytes",
    "cgroup_version",
    "cgroup_path",
    "io_device",
    "pid",
    "pid_start_time",
    "uid",
    "gid",
    "max_output_bytes",
    "output_bytes",
    "name",
    "labels",
    "timeout_millis",
    "idle_timeout_millis",
    "end_reason",
    "output_times",
};
static_assert(kj::size(COLUMN_NAMES) == COLUMN_COUNT, "one name per column");

// MIGRATIONS[i] takes a database from schema version i to i + 1. Unsigned 64-bit fields are
// stored as the signed integer with the same bits; args as each argument followed by a NUL.
// Both tables are clustered on their keys (WITHOUT ROWID) and `jobs` has only the indexes
// that `list` needs, because every page a write touches costs two writes to the WAL.
const kj::StringPtr MIGRATIONS[] = {
    R"(
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        command TEXT NOT NULL,
        args BLOB NOT NULL,
        working_dir TEXT NOT NULL,
        executor TEXT NOT NULL,
        state TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        term_signal INTEGER NOT NULL,
        oom_killed INTEGER NOT NULL,
        oom_killed_main INTEGER NOT NULL,
        error TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER NOT NULL,
        cpu_millicores INTEGER NOT NULL,
        memory_bytes INTEGER NOT NULL,
        io_read_bytes_per_sec INTEGER NOT NULL,
        io_write_bytes_per_sec INTEGER NOT NULL,
        pids_limit INTEGER NOT NULL,
        isolate_pid INTEGER NOT NULL,
        isolate_mount INTEGER NOT NULL,
        isolate_net INTEGER NOT NULL,
        cpu_user_micros INTEGER NOT NULL,
        cpu_system_micros INTEGER NOT NULL,
        peak_memory_bytes INTEGER NOT NULL,
        cgroup_version INTEGER NOT NULL,
        cgroup_path TEXT NOT NULL,
        io_device TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start_time INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX jobs_by_owner ON jobs (owner);
      CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        at INTEGER NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (job_id, ordinal)
      ) WITHOUT ROWID;
    )"_kj,
    // Version 2: the identity each job ran as, and the uid of each owner in dynamic mode. A
    // row whose owner is NULL is a retired uid (a home directory of an unknown owner was found
    // for it): it is never assigned.
    R"(
      ALTER TABLE jobs ADD COLUMN uid INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN gid INTEGER NOT NULL DEFAULT 0;
      CREATE TABLE owner_uids (
        uid INTEGER PRIMARY KEY NOT NULL,
        owner TEXT UNIQUE,
        assigned_at INTEGER NOT NULL
      );
    )"_kj,
    // Version 3: each job's output limit, and the size of its output once it has ended (-1:
    // unknown, for jobs that ended before; the file says).
    R"(
      ALTER TABLE jobs ADD COLUMN max_output_bytes INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN output_bytes INTEGER NOT NULL DEFAULT -1;
    )"_kj,
    // Version 4: each job's name ('' for none) and labels (each key and each value followed by a
    // NUL, as args). No index: runnerd resolves names and id prefixes in its job table, which
    // holds every stored job.
    R"(
      ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT '';
      ALTER TABLE jobs ADD COLUMN labels BLOB NOT NULL DEFAULT x'';
    )"_kj,
    // Version 5: each job's timeouts (0: none), and why it was stopped (endReasonName()). The
    // deadlines follow from them, started_at and the output file's modification time.
    R"(
      ALTER TABLE jobs ADD COLUMN timeout_millis INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN idle_timeout_millis INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN end_reason TEXT NOT NULL DEFAULT 'none';
    )"_kj,
    // Version 6: when each ended job's output arrived (OutputTimes::encode(); empty for a running
    // job, whose times are in memory, and for jobs that ended before).
    R"(
      ALTER TABLE jobs ADD COLUMN output_times BLOB NOT NULL DEFAULT x'';
    )"_kj,
};
static_assert(kj::size(MIGRATIONS) == Store::SCHEMA_VERSION, "one migration per version");

kj::String columnList() {
  return kj::strArray(COLUMN_NAMES, ", ");
}

kj::String insertJobSql() {
  auto params = KJ_MAP(name, COLUMN_NAMES) {
    return kj::str("?", &name - COLUMN_NAMES + 1);
  };
  return kj::str("INSERT INTO jobs (seq, ", columnList(), ") VALUES (",
                 "(SELECT IFNULL(MAX(seq), 0) + 1 FROM jobs), ", kj::strArray(params, ", "), ")");
}

// Sets every column but the key and the owner, which never change (so the owner index is
// left alone).
kj::String updateJobSql() {
  kj::Vector<kj::String> assignments;
  for (int column = ID + 1; column < COLUMN_COUNT; column++) {
    if (column == OWNER) continue;
    assignments.add(kj::str(COLUMN_NAMES[column], " = ?", column + 1));
  }
  return kj::str("UPDATE jobs SET ", kj::strArray(assignments, ", "), " WHERE id = ?", ID + 1);
}

// The directory that holds `path`: the store's -wal and -shm files are created there.
kj::String parentDirectory(kj::StringPtr path) {
  KJ_IF_MAYBE (slash, path.findLast('/')) {
    return *slash == 0 ? kj::str("/") : kj::heapString(path.slice(0, *slash));
  }
  return kj::str(".");
}

void requireWritableDirectory(kj::StringPtr path) {
  kj::String directory = parentDirectory(path);
  struct stat info;
  if (stat(directory.cStr(), &info) < 0) {
    int error = errno;
    if (error == ENOENT) KJ_FAIL_REQUIRE("job store directory is missing", directory, path);
    kj::StringPtr reason = strerror(error);
    KJ_FAIL_REQUIRE("cannot reach job store directory", directory, reason, path);
  }
  if (!S_ISDIR(info.st_mode)) {
    KJ_FAIL_REQUIRE("job store directory is not a directory", directory, path);
  }
  if (access(directory.cStr(), W_OK | X_OK) < 0) {
    kj::StringPtr reason = strerror(errno);
    KJ_FAIL_REQUIRE("job store directory is not writable", directory, reason, path);
  }
}

// Each argument followed by a NUL, so that empty arguments survive.
kj::Array<char> encodeArgs(kj::ArrayPtr<const kj::String> args) {
  size_t size = 0;
  for (auto& arg : args) size += arg.size() + 1;
  auto result = kj::heapArray<char>(size);
  char* pos = result.begin();
  for (auto& arg : args) {
    KJ_REQUIRE(memchr(arg.begin(), '\0', arg.size()) == nullptr,
               "a job argument contains a NUL byte", arg);
    memcpy(pos, arg.begin(), arg.size());
    pos += arg.size();
    *pos++ = '\0';
  }
  return result;
}

// Key, NUL, value, NUL for each label.
kj::Array<char> encodeLabels(kj::ArrayPtr<const JobLabel> labels) {
  auto texts = kj::heapArrayBuilder<kj::String>(labels.size() * 2);
  for (auto& label : labels) {
    texts.add(kj::str(label.key));
    texts.add(kj::str(label.value));
  }
  return encodeArgs(texts.finish());
}

kj::Array<JobLabel> decodeLabels(kj::ArrayPtr<const char> blob);

kj::Array<kj::String> decodeArgs(kj::ArrayPtr<const char> blob) {
  kj::Vector<kj::String> args;
  while (blob.size() > 0) {
    auto end = reinterpret_cast<const char*>(memchr(blob.begin(), '\0', blob.size()));
    KJ_ASSERT(end != nullptr, "corrupt args in the job store: missing NUL terminator");
    args.add(kj::heapString(blob.begin(), end - blob.begin()));
    blob = blob.slice(end - blob.begin() + 1, blob.size());
  }
  return args.releaseAsArray();
}

kj::Array<JobLabel> decodeLabels(kj::ArrayPtr<const char> blob) {
  auto texts = decodeArgs(blob);
  KJ_ASSERT(texts.size() % 2 == 0, "corrupt labels in the job store: a key without a value");
  auto labels = kj::heapArrayBuilder<JobLabel>(texts.size() / 2);
  for (size_t i = 0; i < texts.size(); i += 2) {
    labels.add(JobLabel{kj::mv(texts[i]), kj::mv(texts[i + 1])});
  }
  return labels.finish();
}

void requireNoNul(kj::StringPtr field, kj::StringPtr value) {
  KJ_REQUIRE(memchr(value.begin(), '\0', value.size()) == nullptr,
             "a job field contains a NUL byte", field);
}

int64_t asSigned(uint64_t value) {
  return static_cast<int64_t>(value);
}
uint64_t asUnsigned(int64_t value) {
  return static_cast<uint64_t>(value);
}

// Binds every column of `record`; the caller keeps `args`, `labels` and `times` (its encoded
// args, labels and output times) alive.
void bindRecord(sqlite::Statement& statement, const JobRecord& record,
                kj::ArrayPtr<const char> args, kj::ArrayPtr<const char> labels,
                kj::ArrayPtr<const kj::byte> times) {
  const JobRecord& r = record;
  requireNoNul("id", r.id);
  requireNoNul("owner", r.owner);
  requireNoNul("command", r.command);
  requireNoNul("workingDir", r.workingDir);
  requireNoNul("executor", r.executor);
  requireNoNul("error", r.error);
  requireNoNul("name", r.name);
  KJ_IF_MAYBE (cgroup, r.placement.cgroup) {
    requireNoNul("cgroupPath", cgroup->path);
    requireNoNul("ioDevice", cgroup->ioDevice);
  }
  statement.bind(ID + 1, r.id);
  statement.bind(OWNER + 1, r.owner);
  statement.bind(COMMAND + 1, r.command);
  statement.bindBlob(ARGS + 1, args);
  statement.bind(WORKING_DIR + 1, r.workingDir);
  statement.bind(EXECUTOR + 1, r.executor);
  statement.bind(STATE + 1, stateName(r.state));
  statement.bind(EXIT_CODE + 1, r.exitCode);
  statement.bind(TERM_SIGNAL + 1, r.termSignal);
  statement.bind(OOM_KILLED + 1, r.oomKilled);
  statement.bind(OOM_KILLED_MAIN + 1, r.oomKilledMain);
  statement.bind(ERROR + 1, r.error);
  statement.bind(CREATED_AT + 1, r.createdAt);
  statement.bind(STARTED_AT + 1, r.startedAt);
  statement.bind(ENDED_AT + 1, r.endedAt);
  statement.bind(CPU_MILLICORES + 1, r.limits.cpuMillicores);
  statement.bind(MEMORY_BYTES + 1, asSigned(r.limits.memoryBytes));
  statement.bind(IO_READ_BYTES_PER_SEC + 1, asSigned(r.limits.ioReadBytesPerSec));
  statement.bind(IO_WRITE_BYTES_PER_SEC + 1, asSigned(r.limits.ioWriteBytesPerSec));
  statement.bind(PIDS_LIMIT + 1, r.limits.pids);
  statement.bind(ISOLATE_PID + 1, r.isolation.pid);
  statement.bind(ISOLATE_MOUNT + 1, r.isolation.mount);
  statement.bind(ISOLATE_NET + 1, r.isolation.net);
  statement.bind(CPU_USER_MICROS + 1, asSigned(r.usage.cpuUserMicros));
  statement.bind(CPU_SYSTEM_MICROS + 1, asSigned(r.usage.cpuSystemMicros));
  statement.bind(PEAK_MEMORY_BYTES + 1, asSigned(r.usage.peakMemoryBytes));
  // Version 0 with empty texts: no cgroup.
  KJ_IF_MAYBE (cgroup, r.placement.cgroup) {
    statement.bind(CGROUP_VERSION + 1, cgroup->version);
    statement.bind(CGROUP_PATH + 1, cgroup->path);
    statement.bind(IO_DEVICE + 1, cgroup->ioDevice);
  } else {
    statement.bind(CGROUP_VERSION + 1, 0);
    statement.bind(CGROUP_PATH + 1, ""_kj);
    statement.bind(IO_DEVICE + 1, ""_kj);
  }
  statement.bind(PID + 1, r.pid);
  statement.bind(PID_START_TIME + 1, asSigned(r.pidStartTime));
  statement.bind(UID + 1, int64_t(r.uid));
  statement.bind(GID + 1, int64_t(r.gid));
  statement.bind(MAX_OUTPUT_BYTES + 1, int64_t(r.maxOutputBytes));
  statement.bind(OUTPUT_BYTES + 1, int64_t(r.outputBytes));
  statement.bind(NAME + 1, r.name);
  statement.bindBlob(LABELS + 1, labels);
  statement.bind(TIMEOUT_MILLIS + 1, asSigned(r.timeoutMillis));
  statement.bind(IDLE_TIMEOUT_MILLIS + 1, asSigned(r.idleTimeoutMillis));
  statement.bind(END_REASON + 1, endReasonName(r.endReason));
  statement.bindBlob(OUTPUT_TIMES + 1, times.asChars());
}

JobState readState(kj::StringPtr name) {
  KJ_IF_MAYBE (state, parseState(name)) {
    return *state;
  }
  KJ_FAIL_ASSERT("unknown job state in the job store", name);
}

// Reads a row whose columns are COLUMN_NAMES in order.
JobRecord readRecord(sqlite::Statement& row) {
  JobRecord r;
  r.id = row.getText(ID);
  r.owner = row.getText(OWNER);
  r.command = row.getText(COMMAND);
  r.args = decodeArgs(row.getBlob(ARGS));
  r.workingDir = row.getText(WORKING_DIR);
  r.executor = row.getText(EXECUTOR);
  r.state = readState(row.getText(STATE));
  r.exitCode = row.getInt(EXIT_CODE);
  r.termSignal = row.getInt(TERM_SIGNAL);
  r.oomKilled = row.getInt(OOM_KILLED) != 0;
  r.oomKilledMain = row.getInt(OOM_KILLED_MAIN) != 0;
  r.error = row.getText(ERROR);
  r.createdAt = row.getInt(CREATED_AT);
  r.startedAt = row.getInt(STARTED_AT);
  r.endedAt = row.getInt(ENDED_AT);
  r.limits.cpuMillicores = row.getInt(CPU_MILLICORES);
  r.limits.memoryBytes = asUnsigned(row.getInt(MEMORY_BYTES));
  r.limits.ioReadBytesPerSec = asUnsigned(row.getInt(IO_READ_BYTES_PER_SEC));
  r.limits.ioWriteBytesPerSec = asUnsigned(row.getInt(IO_WRITE_BYTES_PER_SEC));
  r.limits.pids = row.getInt(PIDS_LIMIT);
  r.isolation.pid = row.getInt(ISOLATE_PID) != 0;
  r.isolation.mount = row.getInt(ISOLATE_MOUNT) != 0;
  r.isolation.net = row.getInt(ISOLATE_NET) != 0;
  r.usage.cpuUserMicros = asUnsigned(row.getInt(CPU_USER_MICROS));
  r.usage.cpuSystemMicros = asUnsigned(row.getInt(CPU_SYSTEM_MICROS));
  r.usage.peakMemoryBytes = asUnsigned(row.getInt(PEAK_MEMORY_BYTES));
  if (row.getInt(CGROUP_VERSION) != 0) {
    r.placement.cgroup = executors::Placement::Cgroup{uint8_t(row.getInt(CGROUP_VERSION)),
                                                      row.getText(CGROUP_PATH),
                                                      row.getText(IO_DEVICE)};
  }
  r.pid = row.getInt(PID);
  r.pidStartTime = asUnsigned(row.getInt(PID_START_TIME));
  r.uid = row.getInt(UID);
  r.gid = row.getInt(GID);
  r.maxOutputBytes = uint64_t(row.getInt(MAX_OUTPUT_BYTES));
  r.outputBytes = uint64_t(row.getInt(OUTPUT_BYTES));
  r.name = row.getText(NAME);
  r.labels = decodeLabels(row.getBlob(LABELS));
  r.timeoutMillis = asUnsigned(row.getInt(TIMEOUT_MILLIS));
  r.idleTimeoutMillis = asUnsigned(row.getInt(IDLE_TIMEOUT_MILLIS));
  // A reason a newer runnerd wrote reads as none.
  r.endReason = parseEndReason(row.getText(END_REASON)).orDefault(EndReason::NONE);
  r.outputTimes = OutputTimes::decode(row.getBlob(OUTPUT_TIMES).asBytes());
  return r;
}

// When the record entered its current state, as far as it says; now when it does not.
int64_t stateEnteredAt(const JobRecord& record) {
  int64_t at = hasEnded(record.state)
                   ? record.endedAt
                   : (record.startedAt != 0 ? record.startedAt : record.createdAt);
  if (at != 0) return at;
  return (kj::systemPreciseCalendarClock().now() - kj::UNIX_EPOCH) / kj::MILLISECONDS;
}

kj::String eventDetail(const JobRecord& record) {
  switch (record.state) {
    case JobState::RUNNING:
      return record.pid != 0 ? kj::str("pid ", record.pid) : kj::str();
    case JobState::EXITED:
      return kj::str("exit code ", record.exitCode);
    case JobState::KILLED:
    case JobState::STOPPED:
      if (record.termSignal == 0) return kj::str("exit code ", record.exitCode);
      return kj::str("signal ", record.termSignal, record.oomKilled ? " (out of memory)" : "");
    case JobState::FAILED:
    case JobState::LOST:
      return kj::str(record.error);
  }
  KJ_UNREACHABLE;
}

}  // namespace

kj::Own<Store> Store::open(kj::StringPtr path) {
  requireWritableDirectory(path);
  auto db = kj::heap<sqlite::Database>(path);
  sqlite3_busy_timeout(db->get(), 5000);

  // The first read of the file: a file that is not SQLite fails here, which is the caller's
  // doing (a wrong path) rather than a bug.
  if (sqlite3_exec(db->get(), "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    kj::StringPtr reason = sqlite3_errmsg(db->get());
    KJ_FAIL_REQUIRE("cannot read job store", path, reason);
  }
  {
    sqlite::Statement journalMode(*db, "PRAGMA journal_mode = WAL");
    KJ_REQUIRE(journalMode.step() && journalMode.getText(0) == "wal",
               "job store cannot use WAL journal mode", path);
  }
  // Each commit waits until the log is on disk: what a client was told survives a host crash.
  db->execute("PRAGMA synchronous = FULL");
  // The write-ahead log is cut back to 1 MiB each time a checkpoint empties it, rather than keeping
  // the largest size it ever reached (4 MiB and more after a burst of starts or a prune).
  db->execute("PRAGMA journal_size_limit = 1048576");
  // Pages freed by forgotten jobs go back to the file system (Store::apply), so the file
  // shrinks with retention. A store made before this is rewritten once to allow it.
  int autoVacuum;
  {
    sqlite::Statement query(*db, "PRAGMA auto_vacuum");
    KJ_ASSERT(query.step());
    autoVacuum = query.getInt(0);
  }
  if (autoVacuum != 2) {
    db->execute("PRAGMA auto_vacuum = INCREMENTAL");
    db->execute("VACUUM");
  }

  // Brings the schema up to SCHEMA_VERSION, in one transaction that re-reads the version so
  // that two servers opening a new file at once do not both create it.
  db->execute("BEGIN IMMEDIATE");
  {
    KJ_ON_SCOPE_FAILURE(sqlite3_exec(db->get(), "ROLLBACK", nullptr, nullptr, nullptr));
    sqlite::Statement userVersion(*db, "PRAGMA user_version");
    KJ_ASSERT(userVersion.step());
    int version = userVersion.getInt(0);
    userVersion.reset();
    if (version > SCHEMA_VERSION) {
      KJ_FAIL_REQUIRE("job store has a newer schema than this runnerd knows", path, version);
    }
    for (; version < SCHEMA_VERSION; version++) {
      db->execute(MIGRATIONS[version]);
    }
    db->execute(kj::str("PRAGMA user_version = ", SCHEMA_VERSION));
    db->execute("COMMIT");
  }

  return kj::heap<Store>(kj::mv(db));
}

Store::Store(kj::Own<sqlite::Database> database) : db(kj::mv(database)) {
  auto prepare = [this](kj::StringPtr sql) { return kj::heap<sqlite::Statement>(*db, sql); };
  auto columns = columnList();
  begin = prepare("BEGIN IMMEDIATE");
  commit = prepare("COMMIT");
  insertJob = prepare(insertJobSql());
  updateJob = prepare(updateJobSql());
  selectState = prepare("SELECT state, owner FROM jobs WHERE id = ?1");
  deleteJob = prepare("DELETE FROM jobs WHERE id = ?1");
  deleteEvents = prepare("DELETE FROM job_events WHERE job_id = ?1");
  insertEvent = prepare(
      "INSERT INTO job_events (job_id, ordinal, at, state, detail) VALUES "
      "(?1, (SELECT count(*) FROM job_events WHERE job_id = ?1), ?2, ?3, ?4)");
  selectAll = prepare(kj::str("SELECT ", columns, " FROM jobs ORDER BY seq"));
  selectOne = prepare(kj::str("SELECT ", columns, " FROM jobs WHERE id = ?1"));
  selectEvents =
      prepare("SELECT at, state, detail FROM job_events WHERE job_id = ?1 ORDER BY ordinal");
  selectOwnerUid = prepare("SELECT uid FROM owner_uids WHERE owner = ?1");
  // The lowest uid of [?1, ?2] that has no row: ?1 itself, or one above a taken uid.
  selectFreeUid = prepare(
      "SELECT u FROM (SELECT ?1 AS u WHERE NOT EXISTS (SELECT 1 FROM owner_uids WHERE uid = ?1) "
      "UNION ALL SELECT uid + 1 AS u FROM owner_uids WHERE uid >= ?1 AND uid < ?2 AND NOT EXISTS "
      "(SELECT 1 FROM owner_uids AS next WHERE next.uid = owner_uids.uid + 1)) ORDER BY u LIMIT 1");
  insertOwnerUid = prepare("INSERT INTO owner_uids (uid, owner, assigned_at) VALUES (?1, ?2, ?3)");
  selectOwnerUids = prepare("SELECT uid, owner FROM owner_uids ORDER BY uid");
  savepoint = prepare("SAVEPOINT write");
  release = prepare("RELEASE write");
  rollbackTo = prepare("ROLLBACK TO write");
}

Store::~Store() noexcept(false) {}

namespace {

// An event's detail is a note; the record keeps the whole error.
constexpr size_t MAX_EVENT_DETAIL_BYTES = 1024;

void addEvent(sqlite::Statement& insertEvent, const JobRecord& record) {
  auto detail = eventDetail(record);
  if (detail.size() > MAX_EVENT_DETAIL_BYTES) {
    // Cut at a character boundary, and say so.
    size_t end = MAX_EVENT_DETAIL_BYTES;
    while (end > 0 && (uint8_t(detail[end]) & 0xc0) == 0x80) --end;
    detail = kj::str(detail.slice(0, end), "…");
  }
  insertEvent.bind(1, record.id);
  insertEvent.bind(2, stateEnteredAt(record));
  insertEvent.bind(3, stateName(record.state));
  insertEvent.bind(4, detail);
  insertEvent.run();
}

}  // namespace

void Store::insert(const JobRecord& record) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  Transaction transaction(*this);
  writeInsert(record);
  transaction.commit();
}

void Store::forget(kj::StringPtr id) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  Transaction transaction(*this);
  writeForget(id);
  transaction.commit();
}

void Store::update(const JobRecord& record) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  Transaction transaction(*this);
  write(record);
  transaction.commit();
}

kj::Array<kj::Maybe<kj::Exception>> Store::apply(kj::ArrayPtr<const StoreWrite> writes) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  auto results = kj::heapArray<kj::Maybe<kj::Exception>>(writes.size());
  Transaction transaction(*this);
  for (auto i : kj::indices(writes)) {
    auto& w = writes[i];
    // Each write in a savepoint of its own: a failed one is undone without its neighbours.
    savepoint->run();
    results[i] = kj::runCatchingExceptions([&]() {
      switch (w.kind) {
        case StoreWrite::Kind::INSERT:
          writeInsert(w.record);
          return;
        case StoreWrite::Kind::UPDATE:
          write(w.record);
          return;
        case StoreWrite::Kind::FORGET:
          writeForget(w.record.id);
          return;
      }
      KJ_UNREACHABLE;
    });
    if (results[i] != nullptr) rollbackTo->run();
    release->run();
  }
  transaction.commit();
  for (auto& w : writes) {
    if (w.kind == StoreWrite::Kind::FORGET) {
      // What the forgotten jobs freed goes back to the file system (on this thread). The batch
      // is committed whatever becomes of this: a failure here is only logged, and the pages go
      // back after a later batch.
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { db->execute("PRAGMA incremental_vacuum"); })) {
        KJ_LOG(WARNING, "could not give the freed pages of the job store back", *e);
      }
      break;
    }
  }
  return results;
}

void Store::writeInsert(const JobRecord& record) {
  auto args = encodeArgs(record.args);
  auto labels = encodeLabels(record.labels);
  auto times = OutputTimes::encode(record.outputTimes);
  bindRecord(*insertJob, record, args, labels, times);
  insertJob->run();
  addEvent(*insertEvent, record);
}

void Store::writeForget(kj::StringPtr id) {
  deleteJob->bind(1, id);
  deleteJob->run();
  deleteEvents->bind(1, id);
  deleteEvents->run();
}

void Store::write(const JobRecord& record) {
  auto args = encodeArgs(record.args);
  auto labels = encodeLabels(record.labels);
  JobState previous;
  {
    KJ_DEFER(selectState->reset());
    selectState->bind(1, record.id);
    KJ_REQUIRE(selectState->step(), "no such job in the store", record.id);
    previous = readState(selectState->getText(0));
    KJ_REQUIRE(selectState->getText(1) == record.owner, "a job's owner cannot change", record.id,
               record.owner);
  }
  auto times = OutputTimes::encode(record.outputTimes);
  bindRecord(*updateJob, record, args, labels, times);
  updateJob->run();
  if (previous != record.state) addEvent(*insertEvent, record);
}

kj::Vector<JobRecord> Store::loadAll() {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  KJ_DEFER(selectAll->reset());
  kj::Vector<JobRecord> result;
  while (selectAll->step()) result.add(readRecord(*selectAll));
  return result;
}

kj::Maybe<JobRecord> Store::find(kj::StringPtr id) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  KJ_DEFER(selectOne->reset());
  selectOne->bind(1, id);
  if (!selectOne->step()) return nullptr;
  return readRecord(*selectOne);
}

kj::Vector<EventRow> Store::events(kj::StringPtr id) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  KJ_DEFER(selectEvents->reset());
  selectEvents->bind(1, id);
  kj::Vector<EventRow> result;
  while (selectEvents->step()) {
    EventRow event;
    event.at = selectEvents->getInt(0);
    event.state = readState(selectEvents->getText(1));
    event.detail = selectEvents->getText(2);
    result.add(kj::mv(event));
  }
  return result;
}

kj::Maybe<uint32_t> Store::ownerUid(kj::StringPtr owner) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  KJ_DEFER(selectOwnerUid->reset());
  selectOwnerUid->bind(1, owner);
  if (!selectOwnerUid->step()) return nullptr;
  return uint32_t(selectOwnerUid->getInt(0));
}

kj::Maybe<uint32_t> Store::assignOwnerUid(kj::StringPtr owner, uint32_t first, uint32_t last,
                                          kj::FunctionParam<bool(uint32_t)> usable) {
  KJ_REQUIRE(first <= last, "empty uid range", first, last);
  requireNoNul("owner", owner);
  // A lost assignment could hand an owner's files to another owner: like every commit, this one
  // waits for the disk (synchronous = FULL).
  std::lock_guard<std::recursive_mutex> lock(mutex);
  Transaction transaction(*this);
  KJ_IF_MAYBE (existing, ownerUid(owner)) {
    return *existing;
  }
  auto now = (kj::systemPreciseCalendarClock().now() - kj::UNIX_EPOCH) / kj::MILLISECONDS;
  for (;;) {
    uint32_t candidate;
    {
      KJ_DEFER(selectFreeUid->reset());
      selectFreeUid->bind(1, int64_t(first));
      selectFreeUid->bind(2, int64_t(last));
      if (!selectFreeUid->step()) return nullptr;
      int64_t found = selectFreeUid->getInt(0);
      if (found > int64_t(last)) return nullptr;
      candidate = found;
    }
    bool take = usable(candidate);
    insertOwnerUid->bind(1, int64_t(candidate));
    if (take) {
      insertOwnerUid->bind(2, owner);
    } else {
      insertOwnerUid->bindNull(2);
    }
    insertOwnerUid->bind(3, now);
    insertOwnerUid->run();
    if (take) {
      transaction.commit();
      return candidate;
    }
  }
}

kj::Vector<OwnerUid> Store::ownerUids() {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  KJ_DEFER(selectOwnerUids->reset());
  kj::Vector<OwnerUid> result;
  while (selectOwnerUids->step()) {
    OwnerUid row;
    row.uid = selectOwnerUids->getInt(0);
    if (!selectOwnerUids->isNull(1)) {
      row.owner = selectOwnerUids->getText(1);
    }
    result.add(kj::mv(row));
  }
  return result;
}

}  // namespace runner

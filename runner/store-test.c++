#include "runner/store.h"

#include <kj/async-io.h>
#include <kj/mutex.h>
#include <kj/thread.h>

#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/time.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner/store-writer.h"

#include <fstream>
#include <sstream>
#include <string>

extern char** environ;

namespace runner {
namespace {

// A fresh directory, removed with everything in it at the end of the test.
class TempDir {
 public:
  explicit TempDir(kj::StringPtr base = defaultBase()) {
    path = kj::str(base, "/store-test.XXXXXX");
    KJ_ASSERT(mkdtemp(path.begin()) != nullptr, strerror(errno));
  }
  ~TempDir() {
    nftw(
        path.cStr(),
        [](const char* file, const struct stat*, int, struct FTW*) { return ::remove(file); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  KJ_DISALLOW_COPY(TempDir);

  kj::String file(kj::StringPtr name) const { return kj::str(path, '/', name); }

  kj::String path;

 private:
  static kj::StringPtr defaultBase() {
    const char* base = getenv("TEST_TMPDIR");
    return base == nullptr ? "/tmp" : base;
  }
};

// Field 22 of /proc/PID/stat, parsed independently of the store's own reader.
uint64_t startTimeOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; i++) fields >> field;
  return std::stoull(field);
}

int64_t nowMs() {
  return (kj::systemPreciseCalendarClock().now() - kj::UNIX_EPOCH) / kj::MILLISECONDS;
}

JobRecord runningRecord(kj::StringPtr id) {
  JobRecord record;
  record.id = kj::str(id);
  record.owner = kj::str("alice");
  record.command = kj::str("/bin/sleep");
  record.args = kj::arr(kj::str("10"));
  record.workingDir = kj::str("/tmp");
  record.executor = kj::str("local");
  record.createdAt = 1700000000000;
  record.startedAt = 1700000000005;
  record.pid = 4242;
  record.pidStartTime = 123456;
  return record;
}

// Every field set to something other than its default.
JobRecord fullRecord() {
  JobRecord record;
  record.id = kj::str("3f1c2a9e-8d4b-4c6f-9a1e-0b2c3d4e5f60");
  record.owner = kj::str("bob");
  record.command = kj::str("/usr/bin/printf");
  record.args =
      kj::arr(kj::str("two words"), kj::str("\"double\" and 'single' quotes"),
              kj::str("line one\nline two\r\n"),
              kj::str("tab\there, back\\slash, comma, semicolon;"), kj::str(""),
              kj::str("UTF-8: h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xe2\x9c\x93"),
              kj::str(""));
  record.workingDir = kj::str("/srv/work dir");
  record.executor = kj::str("cgroup");
  record.state = JobState::KILLED;
  record.exitCode = 3;
  record.termSignal = 9;
  record.oomKilled = true;
  record.oomKilledMain = true;
  record.error = kj::str("out of memory: \"killed\"\nsecond line");
  record.createdAt = 1700000000001;
  record.startedAt = 1700000000002;
  record.endedAt = 1700000000003;
  record.limits.cpuMillicores = 1500;
  record.limits.memoryBytes = UINT64_MAX;
  record.limits.ioReadBytesPerSec = 10u << 20;
  record.limits.ioWriteBytesPerSec = (uint64_t(1) << 63) + 7;
  record.limits.pids = 64;
  record.isolation.pid = true;
  record.isolation.mount = true;
  record.isolation.net = true;
  record.usage.cpuUserMicros = 1234567;
  record.usage.cpuSystemMicros = 765432;
  record.usage.peakMemoryBytes = 987654321;
  record.placement.cgroup = executors::Placement::Cgroup{
      2, kj::str("/sys/fs/cgroup/runner/job-3f1c"), kj::str("8:0 (sda)")};
  record.pid = 31337;
  record.pidStartTime = UINT64_MAX - 1;
  record.name = kj::str("nightly-build.v2");
  record.labels =
      kj::arr(JobLabel{kj::str("team"), kj::str("infra")}, JobLabel{kj::str("empty"), kj::str("")},
              JobLabel{kj::str("app.example/tier"), kj::str("caf\xc3\xa9, ok")});
  return record;
}

void expectSame(const JobRecord& expected, const JobRecord& actual) {
  EXPECT_EQ(expected.id, actual.id);
  EXPECT_EQ(expected.owner, actual.owner);
  EXPECT_EQ(expected.command, actual.command);
  ASSERT_EQ(expected.args.size(), actual.args.size());
  for (size_t i = 0; i < expected.args.size(); i++) {
    EXPECT_EQ(expected.args[i], actual.args[i]) << "arg " << i;
  }
  EXPECT_EQ(expected.workingDir, actual.workingDir);
  EXPECT_EQ(expected.executor, actual.executor);
  EXPECT_EQ(stateName(expected.state), stateName(actual.state));
  EXPECT_EQ(expected.exitCode, actual.exitCode);
  EXPECT_EQ(expected.termSignal, actual.termSignal);
  EXPECT_EQ(expected.oomKilled, actual.oomKilled);
  EXPECT_EQ(expected.oomKilledMain, actual.oomKilledMain);
  EXPECT_EQ(expected.error, actual.error);
  EXPECT_EQ(expected.createdAt, actual.createdAt);
  EXPECT_EQ(expected.startedAt, actual.startedAt);
  EXPECT_EQ(expected.endedAt, actual.endedAt);
  EXPECT_EQ(expected.limits.cpuMillicores, actual.limits.cpuMillicores);
  EXPECT_EQ(expected.limits.memoryBytes, actual.limits.memoryBytes);
  EXPECT_EQ(expected.limits.ioReadBytesPerSec, actual.limits.ioReadBytesPerSec);
  EXPECT_EQ(expected.limits.ioWriteBytesPerSec, actual.limits.ioWriteBytesPerSec);
  EXPECT_EQ(expected.limits.pids, actual.limits.pids);
  EXPECT_EQ(expected.isolation.pid, actual.isolation.pid);
  EXPECT_EQ(expected.isolation.mount, actual.isolation.mount);
  EXPECT_EQ(expected.isolation.net, actual.isolation.net);
  EXPECT_EQ(expected.usage.cpuUserMicros, actual.usage.cpuUserMicros);
  EXPECT_EQ(expected.usage.cpuSystemMicros, actual.usage.cpuSystemMicros);
  EXPECT_EQ(expected.usage.peakMemoryBytes, actual.usage.peakMemoryBytes);
  EXPECT_EQ(expected.placement.cgroup == nullptr, actual.placement.cgroup == nullptr);
  KJ_IF_MAYBE (e, expected.placement.cgroup) {
    KJ_IF_MAYBE (a, actual.placement.cgroup) {
      EXPECT_EQ(e->version, a->version);
      EXPECT_EQ(e->path, a->path);
      EXPECT_EQ(e->ioDevice, a->ioDevice);
    }
  }
  EXPECT_EQ(expected.pid, actual.pid);
  EXPECT_EQ(expected.pidStartTime, actual.pidStartTime);
  EXPECT_EQ(expected.name, actual.name);
  ASSERT_EQ(expected.labels.size(), actual.labels.size());
  for (size_t i = 0; i < expected.labels.size(); i++) {
    EXPECT_EQ(expected.labels[i].key, actual.labels[i].key) << "label " << i;
    EXPECT_EQ(expected.labels[i].value, actual.labels[i].value) << "label " << i;
  }
}

JobRecord found(Store& store, kj::StringPtr id) {
  KJ_IF_MAYBE (record, store.find(id)) {
    return kj::mv(*record);
  }
  ADD_FAILURE() << "job not found: " << id.cStr();
  return JobRecord();
}

// The description of the exception `function` throws; fails the test when it throws none.
template <typename Func>
kj::String errorOf(Func&& function) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::fwd<Func>(function))) {
    return kj::str(exception->getDescription());
  }
  ADD_FAILURE() << "expected an exception";
  return kj::str();
}

bool contains(kj::StringPtr haystack, kj::StringPtr needle) {
  return strstr(haystack.cStr(), needle.cStr()) != nullptr;
}

TEST(Store, RoundTripsEveryField) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));

  JobRecord record = fullRecord();
  record.state = JobState::RUNNING;
  store->insert(record);
  expectSame(record, found(*store, record.id));

  JobRecord updated = fullRecord();
  updated.args = kj::arr(kj::str("only one now"));
  updated.usage.peakMemoryBytes = 1;
  store->update(updated);
  expectSame(updated, found(*store, record.id));

  JobRecord noArgs = runningRecord("no-args");
  noArgs.args = nullptr;
  store->insert(noArgs);
  EXPECT_EQ(0u, found(*store, "no-args").args.size());

  EXPECT_TRUE(store->find("no-such-job") == nullptr);
}

TEST(Store, KeepsTimeoutsAndEndReasons) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));
  auto record = fullRecord();
  record.timeoutMillis = 90000;
  record.idleTimeoutMillis = (uint64_t(1) << 63) + 5;
  record.endReason = EndReason::IDLE_TIMEOUT;
  store->insert(record);
  auto loaded = found(*store, record.id);
  EXPECT_EQ(loaded.timeoutMillis, 90000u);
  EXPECT_EQ(loaded.idleTimeoutMillis, (uint64_t(1) << 63) + 5);
  EXPECT_EQ(loaded.endReason, EndReason::IDLE_TIMEOUT);
  for (auto reason :
       {EndReason::NONE, EndReason::STOPPED, EndReason::TIMEOUT, EndReason::OUTPUT_LIMIT}) {
    record.endReason = reason;
    store->update(record);
    EXPECT_EQ(found(*store, record.id).endReason, reason);
  }
}

TEST(Store, KeepsOutputTimes) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));
  auto record = fullRecord();
  store->insert(record);
  EXPECT_EQ(found(*store, record.id).outputTimes.size(), 0u);
  record.outputTimes = kj::heapArray<OutputSample>({{10, 1700000000000}, {uint64_t(1) << 40, -1}});
  store->update(record);
  auto loaded = found(*store, record.id);
  ASSERT_EQ(loaded.outputTimes.size(), 2u);
  EXPECT_EQ(loaded.outputTimes[0].offset, 10u);
  EXPECT_EQ(loaded.outputTimes[0].timeMillis, 1700000000000);
  EXPECT_EQ(loaded.outputTimes[1].offset, uint64_t(1) << 40);
  EXPECT_EQ(loaded.outputTimes[1].timeMillis, -1);
}

TEST(Store, RejectsDuplicatesUnknownIdsAndNulBytes) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));
  store->insert(runningRecord("one"));

  EXPECT_TRUE(contains(errorOf([&]() { store->insert(runningRecord("one")); }), "UNIQUE"));
  EXPECT_TRUE(contains(errorOf([&]() { store->update(runningRecord("two")); }), "no such job"));

  JobRecord otherOwner = runningRecord("one");
  otherOwner.owner = kj::str("mallory");
  EXPECT_TRUE(contains(errorOf([&]() { store->update(otherOwner); }), "owner cannot change"));

  JobRecord withNul = runningRecord("three");
  withNul.args = kj::arr(kj::heapString("a\0b", 3));
  EXPECT_TRUE(contains(errorOf([&]() { store->insert(withNul); }), "NUL"));

  // The failed writes left nothing behind.
  EXPECT_EQ(1u, store->loadAll().size());
  EXPECT_EQ("alice", found(*store, "one").owner);
  EXPECT_EQ(1u, store->events("one").size());
}

TEST(Store, ReopenedStoreReturnsEveryJobWithItsFinalStateInCreationOrder) {
  TempDir dir;
  kj::StringPtr ids[] = {"c-third-alphabetically", "a-first", "b-second", "d-last"};
  {
    auto store = Store::open(dir.file("jobs.db"));
    for (auto id : ids) store->insert(runningRecord(id));

    JobRecord exited = runningRecord("a-first");
    exited.state = JobState::EXITED;
    exited.exitCode = 7;
    exited.endedAt = 1700000001000;
    store->update(exited);

    JobRecord stopped = runningRecord("d-last");
    stopped.state = JobState::STOPPED;
    stopped.termSignal = SIGTERM;
    stopped.endedAt = 1700000002000;
    store->update(stopped);
  }

  auto store = Store::open(dir.file("jobs.db"));
  auto jobs = store->loadAll();
  ASSERT_EQ(4u, jobs.size());
  for (size_t i = 0; i < jobs.size(); i++) EXPECT_EQ(ids[i], jobs[i].id);
  EXPECT_EQ(JobState::RUNNING, jobs[0].state);
  EXPECT_EQ(JobState::EXITED, jobs[1].state);
  EXPECT_EQ(7, jobs[1].exitCode);
  EXPECT_EQ(JobState::RUNNING, jobs[2].state);
  EXPECT_EQ(JobState::STOPPED, jobs[3].state);
  EXPECT_EQ(SIGTERM, jobs[3].termSignal);

  // New jobs still come after the old ones.
  store->insert(runningRecord("0-newest"));
  auto again = store->loadAll();
  ASSERT_EQ(5u, again.size());
  EXPECT_EQ("0-newest", again[4].id);
}

TEST(Store, EventsRecordEveryStateChangeInOrder) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));

  JobRecord record = runningRecord("job");
  store->insert(record);

  // Rewriting the record without a state change records no event.
  record.usage.cpuUserMicros = 500;
  store->update(record);

  record.state = JobState::STOPPED;
  record.termSignal = SIGKILL;
  record.endedAt = 1700000009000;
  store->update(record);
  store->update(record);

  JobRecord failed = runningRecord("failed");
  failed.state = JobState::FAILED;
  failed.exitCode = 127;
  failed.error = kj::str("exec nope: No such file or directory");
  failed.endedAt = 1700000000006;
  store->insert(failed);

  auto events = store->events("job");
  ASSERT_EQ(2u, events.size());
  EXPECT_EQ(JobState::RUNNING, events[0].state);
  EXPECT_EQ(record.startedAt, events[0].at);
  EXPECT_EQ("pid 4242", events[0].detail);
  EXPECT_EQ(JobState::STOPPED, events[1].state);
  EXPECT_EQ(1700000009000, events[1].at);
  EXPECT_EQ("signal 9", events[1].detail);

  auto failedEvents = store->events("failed");
  ASSERT_EQ(1u, failedEvents.size());
  EXPECT_EQ(JobState::FAILED, failedEvents[0].state);
  EXPECT_EQ(failed.error, failedEvents[0].detail);

  EXPECT_EQ(0u, store->events("no-such-job").size());
}

// Whether a job recorded as running still runs is decided by the job table (JobTable::load()),
// in one place, not by the store: see runner/job-table-test.c++.

TEST(Store, UsesWriteAheadLog) {
  TempDir dir;
  auto path = dir.file("jobs.db");
  auto store = Store::open(path);
  store->insert(runningRecord("job"));

  struct stat info;
  EXPECT_EQ(0, stat(kj::str(path, "-wal").cStr(), &info));

  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(path.cStr(), &db, SQLITE_OPEN_READONLY, nullptr));
  KJ_DEFER(sqlite3_close(db));
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr));
  KJ_DEFER(sqlite3_finalize(stmt));
  ASSERT_EQ(SQLITE_ROW, sqlite3_step(stmt));
  EXPECT_STREQ("wal", reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));

  // A reader on another connection sees the committed job.
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, "SELECT count(*) FROM jobs", -1, &count, nullptr));
  KJ_DEFER(sqlite3_finalize(count));
  ASSERT_EQ(SQLITE_ROW, sqlite3_step(count));
  EXPECT_EQ(1, sqlite3_column_int(count, 0));
}

TEST(Store, RejectsFileThatIsNotADatabase) {
  TempDir dir;
  auto path = dir.file("garbage.db");
  {
    kj::FdOutputStream out(kj::AutoCloseFd(open(path.cStr(), O_WRONLY | O_CREAT, 0644)));
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++) junk[i] = static_cast<char>(i * 37 + 11);
    out.write(junk, sizeof(junk));
  }
  auto error = errorOf([&]() { Store::open(path); });
  EXPECT_TRUE(contains(error, path)) << error.cStr();
  EXPECT_TRUE(contains(error, "not a database")) << error.cStr();
  EXPECT_FALSE(contains(error, "\n")) << error.cStr();
}

TEST(Store, RejectsNewerSchemaVersion) {
  TempDir dir;
  auto path = dir.file("jobs.db");
  Store::open(path);
  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path.cStr(), &db));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr));
  sqlite3_close(db);

  auto error = errorOf([&]() { Store::open(path); });
  EXPECT_TRUE(contains(error, "newer")) << error.cStr();
  EXPECT_TRUE(contains(error, path)) << error.cStr();
}

// A store written before names and labels (schema version 3) opens with every job unnamed and
// unlabelled, and takes named jobs from then on.
TEST(Store, MigratesAVersion3StoreToNamesAndLabels) {
  TempDir dir;
  auto path = dir.file("jobs.db");
  Store::open(path)->insert(runningRecord("from-version-3"));
  // Back to version 3: its tables, without the columns versions 4, 5 and 6 added.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3_open(path.cStr(), &db));
    KJ_DEFER(sqlite3_close(db));
    for (auto sql : {"ALTER TABLE jobs DROP COLUMN name", "ALTER TABLE jobs DROP COLUMN labels",
                     "ALTER TABLE jobs DROP COLUMN timeout_millis",
                     "ALTER TABLE jobs DROP COLUMN idle_timeout_millis",
                     "ALTER TABLE jobs DROP COLUMN end_reason",
                     "ALTER TABLE jobs DROP COLUMN output_times", "PRAGMA user_version = 3"}) {
      ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, sql, nullptr, nullptr, nullptr))
          << sql << ": " << sqlite3_errmsg(db);
    }
  }

  auto store = Store::open(path);
  auto old = found(*store, "from-version-3");
  EXPECT_EQ("", old.name);
  EXPECT_EQ(0u, old.labels.size());
  EXPECT_EQ("/bin/sleep", old.command);
  EXPECT_EQ(0u, old.timeoutMillis);
  EXPECT_EQ(EndReason::NONE, old.endReason);
  EXPECT_EQ(0u, old.outputTimes.size());

  JobRecord named = fullRecord();
  store->insert(named);
  expectSame(named, found(*store, named.id));
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3_open(path.cStr(), &db));
    KJ_DEFER(sqlite3_close(db));
    sqlite3_stmt* version = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &version, nullptr));
    KJ_DEFER(sqlite3_finalize(version));
    ASSERT_EQ(SQLITE_ROW, sqlite3_step(version));
    EXPECT_EQ(Store::SCHEMA_VERSION, sqlite3_column_int(version, 0));
  }
}

TEST(Store, RejectsMissingDirectory) {
  TempDir dir;
  auto missing = dir.file("missing");
  auto error = errorOf([&]() { Store::open(kj::str(missing, "/jobs.db")); });
  EXPECT_TRUE(contains(error, "missing")) << error.cStr();
  EXPECT_TRUE(contains(error, missing)) << error.cStr();
  EXPECT_FALSE(contains(error, "\n")) << error.cStr();
}

TEST(Store, RejectsReadOnlyDirectory) {
  // Root may write anywhere, so the attempt is made by an unprivileged child, in a directory
  // it can reach (TEST_TMPDIR may be under root's home).
  TempDir dir("/tmp");
  ASSERT_EQ(0, chmod(dir.path.cStr(), 0555));
  int fds[2];
  ASSERT_EQ(0, pipe(fds));
  kj::AutoCloseFd readEnd(fds[0]), writeEnd(fds[1]);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    KJ_DEFER(_exit(2));
    if (getuid() == 0 &&
        (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)) {
      _exit(3);
    }
    KJ_IF_MAYBE (exception,
                 kj::runCatchingExceptions([&]() { Store::open(dir.file("jobs.db")); })) {
      auto description = exception->getDescription();
      (void)!write(writeEnd, description.begin(), description.size());
      _exit(0);
    }
    _exit(1);
  }
  writeEnd = nullptr;
  kj::FdInputStream in(kj::mv(readEnd));
  auto error = kj::heapString(in.readAllText());
  int status;
  ASSERT_EQ(child, waitpid(child, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "cannot drop to uid 65534 here";
  ASSERT_EQ(0, WEXITSTATUS(status)) << "opening a store in a read-only directory succeeded";
  EXPECT_TRUE(contains(error, "not writable")) << error.cStr();
  EXPECT_TRUE(contains(error, dir.path)) << error.cStr();
}

TEST(Store, JobStartCostsLittle) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));
  constexpr int COUNT = 2000;
  auto& clock = kj::systemPreciseMonotonicClock();
  auto start = clock.now();
  for (int i = 0; i < COUNT; i++) {
    JobRecord record = runningRecord(kj::str("job-", i));
    store->insert(record);
    record.state = JobState::EXITED;
    record.endedAt = record.startedAt + 1;
    store->update(record);
  }
  auto elapsed = clock.now() - start;
  printf("insert+update: %.1f us per job (%d jobs)\n",
         double(elapsed / kj::NANOSECONDS) / 1000.0 / COUNT, COUNT);
  EXPECT_EQ(size_t(COUNT), store->loadAll().size());
  EXPECT_EQ(2u, store->events("job-0").size());
}

TEST(Store, LoadsTenThousandJobs) {
  TempDir dir;
  auto path = dir.file("jobs.db");
  constexpr size_t COUNT = 10000;
  {
    auto store = Store::open(path);
    for (size_t i = 0; i < COUNT; i++) {
      JobRecord record = fullRecord();
      record.id = kj::str("job-", i);
      store->insert(record);
    }
  }
  auto store = Store::open(path);
  auto& clock = kj::systemPreciseMonotonicClock();
  auto start = clock.now();
  auto jobs = store->loadAll();
  auto elapsed = clock.now() - start;
  printf("loadAll: %.1f ms for %zu jobs\n", double(elapsed / kj::MICROSECONDS) / 1000.0,
         jobs.size());
  ASSERT_EQ(COUNT, jobs.size());
  EXPECT_EQ("job-0", jobs[0].id);
  EXPECT_EQ("job-9999", jobs[COUNT - 1].id);
  EXPECT_EQ(7u, jobs[COUNT - 1].args.size());
}

// The store's lock held by another thread until release(): writes queued meanwhile wait for it.
class HeldStore {
 public:
  explicit HeldStore(Store& store) {
    thread = kj::heap<kj::Thread>([this, &store]() {
      // assignOwnerUid holds the store's lock while it asks whether a uid is usable.
      store.assignOwnerUid("holder", 1, 1, [this](uint32_t) {
        *held.lockExclusive() = true;
        release_.lockExclusive().wait([](const bool& go) { return go; });
        return true;
      });
    });
    held.lockExclusive().wait([](const bool& h) { return h; });
  }
  void release() { *release_.lockExclusive() = true; }
  ~HeldStore() noexcept(false) {
    release();
    thread = nullptr;
  }

 private:
  kj::MutexGuarded<bool> held{false};
  kj::MutexGuarded<bool> release_{false};
  kj::Own<kj::Thread> thread;
};

TEST(StoreWriter, ManyWritesQueuedTogetherShareOneTransaction) {
  TempDir dir;
  auto path = dir.file("jobs.db");
  auto store = Store::open(path);
  auto io = kj::setupAsyncIo();
  StoreWriter writer(*store);
  constexpr int COUNT = 500;
  kj::Vector<kj::Promise<void>> written;
  {
    HeldStore held(*store);
    for (int i = 0; i < COUNT; i++) {
      JobRecord record = runningRecord(kj::str("job-", i));
      written.add(writer.insert(record.clone()));
      record.state = JobState::EXITED;
      record.endedAt = record.startedAt + 1;
      written.add(writer.update(kj::mv(record)));
    }
  }
  kj::joinPromises(written.releaseAsArray()).wait(io.waitScope);
  // The writer may have taken the first write before the lock was held; the rest wait together.
  EXPECT_LE(writer.transactions(), 2u);

  // All of it is in the file, for another connection to read.
  auto reader = Store::open(path);
  auto jobs = reader->loadAll();
  ASSERT_EQ(size_t(COUNT), jobs.size());
  for (auto& job : jobs) EXPECT_EQ(JobState::EXITED, job.state) << job.id.cStr();
  EXPECT_EQ(2u, reader->events("job-0").size());
  EXPECT_EQ(2u, reader->events(kj::str("job-", COUNT - 1)).size());
}

TEST(StoreWriter, TheFileShrinksAsJobsAreForgottenAndEventsKeepShortNotes) {
  TempDir dir;
  auto path = dir.file("jobs.db");
  auto store = Store::open(path);
  auto io = kj::setupAsyncIo();
  StoreWriter writer(*store);
  auto fileBytes = [&]() {
    struct stat st;
    KJ_SYSCALL(stat(path.cStr(), &st));
    struct stat wal;
    size_t walBytes = stat(kj::str(path, "-wal").cStr(), &wal) == 0 ? wal.st_size : 0;
    return size_t(st.st_size) + walBytes;
  };
  // 200 failed jobs, each with 64 KiB of arguments and an error as long.
  auto big = kj::heapString(64 * 1024);
  memset(big.begin(), 'x', big.size());
  kj::Vector<kj::Promise<void>> written;
  for (int i = 0; i < 200; i++) {
    JobRecord record = runningRecord(kj::str("job-", i));
    record.args = kj::heapArray<kj::String>(1);
    record.args[0] = kj::str(big);
    record.state = JobState::FAILED;
    record.error = kj::str("exec ", big, ": No such file or directory");
    written.add(writer.insert(kj::mv(record)));
  }
  kj::joinPromises(written.releaseAsArray()).wait(io.waitScope);
  auto events = store->events("job-0");
  ASSERT_EQ(1u, events.size());
  // The record keeps the whole error; its event a note of at most 1 KiB.
  EXPECT_LE(events[0].detail.size(), 1024u + 3);
  EXPECT_EQ(KJ_ASSERT_NONNULL(store->find("job-0")).error.size(), big.size() + 32);
  // Checkpointed (by a connection of its own), so that the file itself holds it all.
  auto checkpoint = [&]() {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.cStr(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  };
  checkpoint();
  size_t full = fileBytes();
  EXPECT_GT(full, size_t(200 * 128 * 1024)) << full;
  for (int i = 0; i < 200; i++) written.add(writer.forget(kj::str("job-", i)));
  kj::joinPromises(written.releaseAsArray()).wait(io.waitScope);
  checkpoint();
  size_t after = fileBytes();
  KJ_LOG(WARNING, "store file bytes with 200 jobs of 128 KiB, and after they were forgotten",
         full, after);
  EXPECT_LT(after, full / 4) << full << " -> " << after;
}

TEST(StoreWriter, AFailedWriteFailsAloneAndTheOthersCommitInOrder) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));
  auto io = kj::setupAsyncIo();
  StoreWriter writer(*store);
  kj::Promise<void> first = nullptr, duplicate = nullptr, unknown = nullptr, ended = nullptr,
                    other = nullptr, forgotten = nullptr;
  {
    HeldStore held(*store);
    first = writer.insert(runningRecord("a"));
    duplicate = writer.insert(runningRecord("a"));
    unknown = writer.update(runningRecord("missing"));
    JobRecord end = runningRecord("a");
    end.state = JobState::EXITED;
    end.endedAt = end.startedAt + 1;
    ended = writer.update(kj::mv(end));
    other = writer.insert(runningRecord("b"));
    forgotten = writer.forget(kj::str("b"));
  }
  first.wait(io.waitScope);
  auto errorOfPromise = [&](kj::Promise<void>& promise) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { promise.wait(io.waitScope); })) {
      return kj::str(e->getDescription());
    }
    return kj::str();
  };
  EXPECT_NE(errorOfPromise(duplicate), "");
  EXPECT_TRUE(contains(errorOfPromise(unknown), "no such job")) << "unknown id";
  ended.wait(io.waitScope);
  other.wait(io.waitScope);
  forgotten.wait(io.waitScope);

  auto jobs = store->loadAll();
  ASSERT_EQ(1u, jobs.size());
  EXPECT_EQ("a", jobs[0].id);
  EXPECT_EQ(JobState::EXITED, jobs[0].state);
  EXPECT_EQ(2u, store->events("a").size());
  EXPECT_EQ(0u, store->events("b").size());
}

TEST(StoreWriter, AWriteThatTakesTooLongIsTheStoreNotAnswering) {
  TempDir dir;
  auto store = Store::open(dir.file("jobs.db"));
  auto io = kj::setupAsyncIo();
  StoreWriter writer(*store);
  HeldStore held(*store);
  auto late = withStoreDeadline(io.provider->getTimer(), writer.insert(runningRecord("a")),
                                50 * kj::MILLISECONDS);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { late.wait(io.waitScope); })) {
    EXPECT_EQ(kj::StringPtr(e->getDescription()), kj::str("unavailable: ", STORE_NOT_ANSWERING));
    EXPECT_TRUE(isStoreNotAnswering(*e));
  } else {
    ADD_FAILURE() << "a write held back by the store's lock completed";
  }
  // The write itself still happens once the store answers.
  held.release();
  writer.insert(runningRecord("b")).wait(io.waitScope);
  EXPECT_EQ(2u, store->loadAll().size());
}

}  // namespace
}  // namespace runner

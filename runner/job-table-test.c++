#include "runner/job-table.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "executors/spawn.h"
#include "runner/event-log.h"

#include "runner/test-harness.h"

namespace runner {
namespace {

using testing::Harness;
using testing::TempDir;

// Whether `pid` has died (gone, or a zombie waiting for its new parent to reap it). SIGKILL
// takes effect asynchronously, so this waits up to two seconds for it.
bool diesSoon(pid_t pid) {
  for (int i = 0; i < 200; i++) {
    auto path = kj::str("/proc/", pid, "/stat");
    FILE* f = fopen(path.cStr(), "r");
    if (f == nullptr) return true;
    char buffer[512];
    size_t n = fread(buffer, 1, sizeof(buffer) - 1, f);
    fclose(f);
    buffer[n] = 0;
    const char* close = strrchr(buffer, ')');
    if (close != nullptr && close[1] == ' ' && close[2] == 'Z') return true;
    usleep(10000);
  }
  return false;
}

#define SKIP_UNLESS_JOBS_CAN_RUN()                 \
  KJ_IF_MAYBE (reason, testing::cannotRunJobs()) { \
    GTEST_SKIP() << reason->cStr();                \
  }

TEST(JobTable, ExitCodeZeroIsExited) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("exit 0");
  h.waitEnded(job);
  EXPECT_EQ(job.record().state, JobState::EXITED);
  EXPECT_EQ(job.record().exitCode, 0);
  EXPECT_GT(job.record().endedAt, 0);
}

TEST(JobTable, ExitCodeThreeIsRecorded) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("exit 3");
  h.waitEnded(job);
  EXPECT_EQ(job.record().state, JobState::EXITED);
  EXPECT_EQ(job.record().exitCode, 3);
}

TEST(JobTable, DeathBySignalIsKilled) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("kill -SEGV $$");
  h.waitEnded(job);
  EXPECT_EQ(job.record().state, JobState::KILLED);
  EXPECT_EQ(job.record().termSignal, SIGSEGV);
}

TEST(JobTable, MissingCommandFailsWithErrnoText) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  kj::StringPtr argv[] = {"/no/such/command"};
  auto& job = h.start(argv);
  EXPECT_EQ(job.record().state, JobState::FAILED);
  EXPECT_NE(job.record().error.findFirst('N'), nullptr);
  EXPECT_TRUE(strstr(job.record().error.cStr(), "No such file or directory") != nullptr)
      << job.record().error.cStr();
}

TEST(JobTable, EmptyCommandIsRejected) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  StartRequest request;
  request.command = kj::str("");
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { h.table->start("alice", kj::mv(request)).wait(h.io.waitScope); })) {
    EXPECT_EQ(e->getDescription(), "invalid: empty command");
  } else {
    ADD_FAILURE() << "an empty command was accepted";
  }
  EXPECT_EQ(h.table->all().size(), 0u);
}

TEST(JobTable, APathTooLongToSearchIsRefusedBeforeTheLaunch) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  kj::Vector<kj::String> directories;
  for (int i = 0; i < 65; i++) directories.add(kj::str("/nowhere/", i));
  auto path = kj::str("PATH=", kj::strArray(directories, ":"));
  {
    StartRequest request;
    request.command = kj::str("true");
    request.env = kj::arr(kj::str(path));
    auto e = kj::runCatchingExceptions(
        [&]() { h.table->start("alice", kj::mv(request)).wait(h.io.waitScope); });
    EXPECT_EQ(KJ_ASSERT_NONNULL(e).getDescription(),
              "invalid: the job's PATH has 65 directories; at most 64 are searched");
  }
  // A command with a slash is not looked for.
  StartRequest request;
  request.command = kj::str("/bin/true");
  request.env = kj::arr(kj::mv(path));
  auto& job = *h.table->start("alice", kj::mv(request)).wait(h.io.waitScope);
  job.release();
  EXPECT_EQ(h.table->all().size(), 1u);
}

TEST(JobTable, UnknownExecutorAndBadEnvironmentAreRejected) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  {
    StartRequest request;
    request.command = kj::str("true");
    request.executor = kj::str("nonesuch");
    auto e = kj::runCatchingExceptions(
        [&]() { h.table->start("alice", kj::mv(request)).wait(h.io.waitScope); });
    ASSERT_TRUE(e != nullptr);
    EXPECT_TRUE(strstr(KJ_ASSERT_NONNULL(e).getDescription().cStr(), "unknown executor"));
  }
  {
    StartRequest request;
    request.command = kj::str("true");
    request.env = kj::arr(kj::str("NOEQUALSSIGN"));
    auto e = kj::runCatchingExceptions(
        [&]() { h.table->start("alice", kj::mv(request)).wait(h.io.waitScope); });
    ASSERT_TRUE(e != nullptr);
    EXPECT_TRUE(strstr(KJ_ASSERT_NONNULL(e).getDescription().cStr(), "NAME=value"));
  }
  EXPECT_EQ(h.table->all().size(), 0u);
}

TEST(JobTable, StopEscalatesToKillAfterTheGracePeriod) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("trap '' TERM; echo ready; while :; do sleep 0.05; done");
  // Wait until the trap is installed.
  while (h.output(job) != "ready\n") job.outputChanged().wait(h.io.waitScope);
  auto& timer = h.io.provider->getTimer();
  auto before = timer.now();
  job.stop(300 * kj::MILLISECONDS).wait(h.io.waitScope);
  auto elapsed = timer.now() - before;
  EXPECT_EQ(job.record().state, JobState::STOPPED);
  EXPECT_EQ(job.record().termSignal, SIGKILL);
  EXPECT_GE(elapsed, 300 * kj::MILLISECONDS);
}

TEST(JobTable, StopOfAJobThatHonoursTermIsQuick) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("exec sleep 1000");
  job.stop(30 * kj::SECONDS).wait(h.io.waitScope);
  EXPECT_EQ(job.record().state, JobState::STOPPED);
  EXPECT_EQ(job.record().termSignal, SIGTERM);
}

TEST(JobTable, StopKillsBackgroundChildrenOfTheJob) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("sleep 1000 & echo $!; wait");
  while (h.output(job).size() == 0) job.outputChanged().wait(h.io.waitScope);
  auto text = h.output(job);
  auto child = kj::str(text.slice(0, text.size() - 1)).parseAs<int>();
  ASSERT_EQ(kill(child, 0), 0);
  job.stop(1 * kj::SECONDS).wait(h.io.waitScope);
  EXPECT_TRUE(diesSoon(child));
}

TEST(JobTable, LeftoversDieWhenTheMainProcessEnds) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("sleep 1000 & echo $!");
  h.waitEnded(job);
  auto text = h.output(job);
  auto child = kj::str(text.slice(0, text.size() - 1)).parseAs<int>();
  EXPECT_EQ(job.record().state, JobState::EXITED);
  EXPECT_TRUE(diesSoon(child));
}

TEST(JobTable, RunsAsRunnerJobsWithACleanEnvironment) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  setenv("RUNNER_TEST_SECRET", "leaked", 1);
  StartRequest request;
  request.command = kj::str("/bin/sh");
  request.args =
      kj::arr(kj::str("-c"),
              kj::str("id -u; echo \"[$RUNNER_TEST_SECRET]\"; echo \"$GREETING\"; echo $USER"));
  request.env = kj::arr(kj::str("GREETING=hello world"));
  auto& job = *h.table->start("alice", kj::mv(request)).wait(h.io.waitScope);
  h.waitEnded(job);
  unsetenv("RUNNER_TEST_SECRET");
  auto uid = getpwnam("runner-jobs")->pw_uid;
  EXPECT_EQ(h.output(job), kj::str(uid, "\n[]\nhello world\nrunner-jobs\n"));
}

TEST(JobTable, OutputFileIsNotWritableByTheJobUser) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("echo hi");
  h.waitEnded(job);
  struct stat st;
  ASSERT_EQ(stat(job.outputPath().cStr(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(h.output(job), "hi\n");
  EXPECT_EQ(job.outputBytes(), 3u);
}

TEST(JobTable, UsageIsRecorded) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto& job = h.sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
  h.waitEnded(job);
  EXPECT_GT(job.record().usage.cpuUserMicros + job.record().usage.cpuSystemMicros, 0u);
  // Too small to tell from what it inherited of the server's memory at exec: unknown.
  EXPECT_EQ(job.record().usage.peakMemoryBytes, 0u);
}

TEST(JobTable, RestartedServerKnowsEveryJobWithItsFinalState) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  kj::String ids[3];
  {
    Harness h(dir);
    auto& a = h.sh("echo one; exit 0");
    auto& b = h.sh("exit 7");
    kj::StringPtr argv[] = {"/missing"};
    auto& c = h.start(argv, "bob");
    h.waitEnded(a);
    h.waitEnded(b);
    ids[0] = kj::str(a.id());
    ids[1] = kj::str(b.id());
    ids[2] = kj::str(c.id());
  }
  Harness h(dir);
  ASSERT_EQ(h.table->all().size(), 3u);
  auto& a = KJ_ASSERT_NONNULL(h.table->find(ids[0]));
  auto& b = KJ_ASSERT_NONNULL(h.table->find(ids[1]));
  auto& c = KJ_ASSERT_NONNULL(h.table->find(ids[2]));
  EXPECT_EQ(a.record().state, JobState::EXITED);
  EXPECT_EQ(h.output(a), "one\n");
  EXPECT_EQ(b.record().exitCode, 7);
  EXPECT_EQ(c.record().state, JobState::FAILED);
  EXPECT_EQ(c.record().owner, "bob");
  EXPECT_EQ(h.table->all()[0]->id(), ids[0]);
}

TEST(JobTable, JobRunningWhenTheServerWentAwayBecomesLost) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  kj::String id;
  pid_t pid;
  {
    Harness h(dir);
    auto& job = h.sh("exec sleep 1000");
    id = kj::str(job.id());
    pid = job.record().pid;
    // The server "crashes": its job table goes without ending the job; the process is killed
    // behind its back, as if it died while nobody watched.
    kill(-pid, SIGKILL);
    h.table = nullptr;
  }
  Harness h(dir);
  auto& job = KJ_ASSERT_NONNULL(h.table->find(id));
  EXPECT_EQ(job.record().state, JobState::LOST);
  EXPECT_GT(job.record().endedAt, 0);
  EXPECT_GT(job.record().error.size(), 0u);
}

TEST(JobTable, AStartWhoseRecordCannotBeWrittenLeavesNoOutputFile) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  // Another connection holds the database's write lock: the start's insert fails (busy, once the
  // store's busy timeout has passed).
  sqlite3* other;
  ASSERT_EQ(sqlite3_open(kj::str(dir.path(), "/runner.db").cStr(), &other), SQLITE_OK);
  KJ_DEFER(sqlite3_close(other));
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto error = kj::runCatchingExceptions([&]() { h.sh("exec sleep 1000"); });
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  EXPECT_NE(error, nullptr) << "the start fails";
  EXPECT_EQ(h.table->all().size(), 0u);

  // The file is removed on the output files' thread, soon after the start failed.
  auto leftBehind = [&]() {
    kj::Vector<kj::String> names;
    DIR* logs = opendir(kj::str(dir.path(), "/logs").cStr());
    KJ_ASSERT(logs != nullptr);
    KJ_DEFER(closedir(logs));
    while (struct dirent* entry = readdir(logs)) {
      kj::StringPtr name = entry->d_name;
      if (name.endsWith(".log")) names.add(kj::str(name));
    }
    return names;
  };
  for (int i = 0; i < 200 && leftBehind().size() > 0; i++) {
    h.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(h.io.waitScope);
  }
  for (auto& name : leftBehind()) ADD_FAILURE() << "left behind: " << name.cStr();
}

TEST(JobTable, StartsAreRefusedAtOnceWhileTheStoreBacklogIsFull) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir, nullptr, 0, /*maxDiskBacklog=*/2);
  // Another connection holds the database's write lock: the writer waits on the first insert,
  // and the next ones queue behind it.
  sqlite3* other;
  ASSERT_EQ(sqlite3_open(kj::str(dir.path(), "/runner.db").cStr(), &other), SQLITE_OK);
  KJ_DEFER(sqlite3_close(other));
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto startSleep = [&]() {
    StartRequest request;
    request.command = kj::str("/bin/sleep");
    request.args = kj::heapArray<kj::String>(1);
    request.args[0] = kj::str("1000");
    return h.table->start("alice", kj::mv(request));
  };
  kj::Vector<kj::Promise<Job*>> pending;
  for (int i = 0; i < 3; i++) {
    pending.add(startSleep().eagerlyEvaluate(nullptr));
    h.io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(h.io.waitScope);
  }
  // One insert taken by the writer, two queued: the next start is refused, without waiting.
  auto begin = h.io.provider->getTimer().now();
  auto refused = kj::runCatchingExceptions([&]() { startSleep().wait(h.io.waitScope); });
  auto& e = KJ_ASSERT_NONNULL(refused, "a start was queued past the backlog");
  EXPECT_TRUE(strstr(e.getDescription().cStr(), "the state store is not answering") != nullptr)
      << e.getDescription().cStr();
  EXPECT_LT(h.io.provider->getTimer().now() - begin, 1 * kj::SECONDS);
  // The lock gone, the queued starts go through.
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  for (auto& start : pending) {
    auto& job = *start.wait(h.io.waitScope);
    EXPECT_EQ(job.record().state, JobState::RUNNING);
    job.release();
  }
}

TEST(JobTable, OrphanStillRunningAfterARestartIsKilledAndLost) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  // A job whose server went away while it kept running: its own process group, recorded as
  // running with its real pid and start time.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid;
  char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("1000"), nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sleep", nullptr, &attr, argv, environ), 0);
  posix_spawnattr_destroy(&attr);
  {
    auto store = Store::open(kj::str(dir.path(), "/runner.db"));
    JobRecord record;
    record.id = newJobId();
    record.owner = kj::str("alice");
    record.command = kj::str("/bin/sleep");
    record.executor = kj::str("local");
    record.createdAt = record.startedAt = nowMillis();
    record.pid = pid;
    record.pidStartTime = KJ_ASSERT_NONNULL(executors::processStartTime(pid));
    store->insert(record);
  }
  Harness h(dir);
  ASSERT_EQ(h.table->all().size(), 1u);
  auto& job = *h.table->all()[0];
  EXPECT_EQ(job.record().state, JobState::LOST);
  EXPECT_TRUE(strstr(job.record().error.cStr(), "restarted") != nullptr)
      << job.record().error.cStr();
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST(JobTable, ARunningRecordWhosePidWasReusedIsLostAndTheNewProcessIsLeftAlone) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  kj::String id;
  {
    // This very test process holds the recorded pid now, with another start time: a job whose pid
    // was reused after it ended. Killing its group would end this test.
    auto store = Store::open(kj::str(dir.path(), "/runner.db"));
    JobRecord record;
    record.id = newJobId();
    record.owner = kj::str("alice");
    record.command = kj::str("/bin/sleep");
    record.executor = kj::str("local");
    record.createdAt = record.startedAt = nowMillis();
    record.pid = getpid();
    record.pidStartTime = KJ_ASSERT_NONNULL(executors::processStartTime(getpid())) + 1;
    store->insert(record);
    id = kj::mv(record.id);
  }
  Harness h(dir);
  auto& job = KJ_ASSERT_NONNULL(h.table->find(id));
  EXPECT_EQ(job.record().state, JobState::LOST);
  EXPECT_EQ(job.record().error, Store::LOST_ERROR);
  auto events = h.store->events(id);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].state, JobState::LOST);
}

// Stored jobs, as a restarted server finds them: `count` ended jobs, every third bob's, the
// others alice's; every fifth failed.
kj::Vector<kj::String> storeEndedJobs(Store& store, size_t count) {
  kj::Vector<kj::String> ids;
  for (size_t i = 0; i < count; i++) {
    JobRecord rec;
    rec.id = newJobId();
    rec.owner = kj::str(i % 3 == 0 ? "bob" : "alice");
    rec.command = kj::str("/bin/true");
    rec.args = kj::heapArray<kj::String>(0);
    rec.workingDir = kj::str("/");
    rec.executor = kj::str("local");
    rec.state = i % 5 == 0 ? JobState::FAILED : JobState::EXITED;
    rec.createdAt = rec.startedAt = rec.endedAt = 1;
    rec.outputBytes = 0;
    store.insert(rec);
    ids.add(kj::mv(rec.id));
  }
  return ids;
}

// Every page of `query` from the first, checking each page's bounds.
kj::Vector<kj::String> listAll(JobTable& table, ListQuery query) {
  kj::Vector<kj::String> ids;
  kj::String after;
  for (int pages = 0;; pages++) {
    KJ_ASSERT(pages < 1000, "paging does not end");
    query.after = after;
    auto page = table.list(query);
    EXPECT_LE(page.jobs.size(), LIST_PAGE_JOBS);
    for (auto job : page.jobs) ids.add(kj::str(job->id()));
    KJ_IF_MAYBE (next, page.next) {
      after = kj::mv(*next);
    } else {
      return ids;
    }
  }
}

TEST(JobTable, ListPagesThroughEveryStoredJobInOrder) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  kj::Vector<kj::String> stored;
  {
    Harness h(dir);
    stored = storeEndedJobs(*h.store, 2500);
  }
  Harness h(dir);
  auto all = listAll(*h.table, ListQuery{});
  ASSERT_EQ(all.size(), stored.size());
  for (auto i : kj::indices(stored)) EXPECT_EQ(all[i], stored[i]);

  ListQuery mine;
  mine.owner = "bob"_kj;
  auto bobs = listAll(*h.table, mine);
  EXPECT_EQ(bobs.size(), 834u);
  EXPECT_EQ(bobs[0], stored[0]);
  EXPECT_EQ(bobs[833], stored[2499]);

  ListQuery failed;
  failed.states = 1u << uint(JobState::FAILED);
  auto failures = listAll(*h.table, failed);
  EXPECT_EQ(failures.size(), 500u);
  EXPECT_EQ(failures[1], stored[5]);

  // The newest 1,200 of alice's, over two pages.
  ListQuery newest;
  newest.owner = "alice"_kj;
  newest.limit = 1200;
  auto last = listAll(*h.table, newest);
  kj::Vector<kj::StringPtr> alices;
  for (auto i : kj::indices(stored)) {
    if (i % 3 != 0) alices.add(stored[i]);
  }
  ASSERT_EQ(last.size(), 1200u);
  for (auto i : kj::indices(last)) EXPECT_EQ(last[i], alices[alices.size() - 1200 + i]);
}

TEST(JobTable, ListRefusesCursorsItDidNotMake) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  {
    Harness h(dir);
    storeEndedJobs(*h.store, 1500);
  }
  Harness h(dir);
  auto first = h.table->list(ListQuery{});
  auto next = kj::str(KJ_ASSERT_NONNULL(first.next));
  for (kj::StringPtr bad : {"x"_kj, "1"_kj, "1.0"_kj, "-1.0.all"_kj, "01.0.all"_kj, "9999.0.all"_kj,
                            "1.0.own"_kj, "1.99999999999.all"_kj, "1.0.all.x"_kj}) {
    ListQuery query;
    query.after = bad;
    EXPECT_ANY_THROW(h.table->list(query)) << bad.cStr();
  }
  // A cursor of everyone's jobs is not one of an owner's.
  ListQuery mine;
  mine.owner = "alice"_kj;
  mine.after = next;
  EXPECT_ANY_THROW(h.table->list(mine));
}

TEST(JobTable, ListPagesBoundTheAnswerSize) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  {
    Harness h(dir);
    // 12 jobs with 1 MiB of arguments each: a page holds 1 MiB of them, but always one.
    for (int i = 0; i < 12; i++) {
      JobRecord rec;
      rec.id = newJobId();
      rec.owner = kj::str("alice");
      rec.command = kj::str("/bin/echo");
      rec.args = kj::heapArray<kj::String>(1);
      rec.args[0] = kj::heapString(1024 * 1024);
      memset(rec.args[0].begin(), 'x', rec.args[0].size());
      rec.workingDir = kj::str("/");
      rec.executor = kj::str("local");
      rec.state = JobState::EXITED;
      h.store->insert(rec);
    }
  }
  Harness h(dir);
  size_t seen = 0;
  ListQuery query;
  kj::String after;
  do {
    query.after = after;
    auto page = h.table->list(query);
    EXPECT_EQ(page.jobs.size(), 1u);
    seen += page.jobs.size();
    after = page.next == nullptr ? kj::str() : kj::mv(KJ_ASSERT_NONNULL(page.next));
  } while (after.size() > 0);
  EXPECT_EQ(seen, 12u);
}

TEST(JobTable, RetentionForgetsTheOldestEndedJobsOfAnOwner) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  kj::Vector<kj::String> alices;
  kj::String bobs;
  kj::String held;
  {
    Harness h(dir, std::make_pair(uint32_t(5), uint64_t(1) << 30));
    kj::StringPtr missing[] = {"/nonexistent"};
    // 8 of alice's jobs that fail at once, and one of bob's.
    for (int i = 0; i < 8; i++) {
      auto& job = h.start(missing, "alice");
      alices.add(kj::str(job.id()));
      // The table holds each started job for its caller; the first stays held, as by a client's
      // capability.
      if (i > 0) job.release();
    }
    held = kj::str(alices[0]);
    auto& bob = h.start(missing, "bob");
    bob.release();
    bobs = kj::str(bob.id());
    // Retention runs after the starts (not within them).
    h.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(h.io.waitScope);
    // The held one stays; of the others, the newest 4 are kept (5 ended in all).
    EXPECT_NE(h.table->find(held), nullptr);
    for (int i = 1; i < 4; i++) EXPECT_EQ(h.table->find(alices[i]), nullptr) << i;
    for (int i = 4; i < 8; i++) EXPECT_NE(h.table->find(alices[i]), nullptr) << i;
    EXPECT_NE(h.table->find(bobs), nullptr);
    struct stat st;
    EXPECT_NE(stat(kj::str(dir.path(), "/logs/", alices[1], ".log").cStr(), &st), 0)
        << "a forgotten job's output stayed";
    EXPECT_EQ(stat(kj::str(dir.path(), "/logs/", alices[7], ".log").cStr(), &st), 0);
    // Paging still works across what was forgotten.
    ListQuery mine;
    mine.owner = "alice"_kj;
    EXPECT_EQ(h.table->list(mine).jobs.size(), 5u);
  }
  // A restarted table applies it to what it loads: the unheld oldest goes now.
  Harness h(dir, std::make_pair(uint32_t(4), uint64_t(1) << 30));
  EXPECT_EQ(h.table->find(held), nullptr);
  ListQuery mine;
  mine.owner = "alice"_kj;
  EXPECT_EQ(h.table->list(mine).jobs.size(), 4u);
  EXPECT_NE(h.table->find(alices[7]), nullptr);
  EXPECT_NE(h.table->find(bobs), nullptr);
}

TEST(JobTable, PruneRemovesABatchPerTurnAndAHeldJobStaysUntilReleased) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  kj::StringPtr missing[] = {"/nonexistent"};
  kj::String heldId;
  kj::String bobs;
  {
    Harness h(dir);
    // Jobs that fail at once: ended, with nothing running.
    Job* held = nullptr;
    for (int i = 0; i < 200; i++) {
      auto& job = h.start(missing, "alice");
      // The first stays held, as by a client's capability.
      if (i == 0) {
        held = &job;
      } else {
        job.release();
      }
    }
    heldId = kj::str(held->id());
    auto& bob = h.start(missing, "bob");
    bob.release();
    bobs = kj::str(bob.id());

    auto pruning = h.table->prune("alice"_kj, nowMillis());
    // One batch in this turn; the rest in later ones, others being served in between.
    EXPECT_EQ(h.table->all().size(), 201 - REMOVE_PER_TURN);
    auto pruned = pruning.wait(h.io.waitScope);
    EXPECT_EQ(pruned.removed, 200u);
    EXPECT_EQ(pruned.bytes, 0u);
    ASSERT_EQ(h.table->all().size(), 1u);
    EXPECT_EQ(h.table->all()[0]->id(), bobs);
    EXPECT_EQ(h.table->find(heldId), nullptr);
    struct stat st;
    EXPECT_NE(stat(kj::str(dir.path(), "/logs/", heldId, ".log").cStr(), &st), 0);

    // The held job is still there for its holder, which learns that it was removed.
    EXPECT_TRUE(held->isRemoved());
    EXPECT_EQ(held->record().owner, "alice");
    KJ_IF_MAYBE (e,
                 kj::runCatchingExceptions([&]() { held->whenRemoved().wait(h.io.waitScope); })) {
      EXPECT_EQ(e->getDescription(), kj::str("conflict: job ", heldId, " was removed"));
    } else {
      ADD_FAILURE() << "whenRemoved() resolved";
    }
    held->release();
  }
  // The store forgot them too.
  Harness h(dir);
  ASSERT_EQ(h.table->all().size(), 1u);
  EXPECT_EQ(h.table->all()[0]->id(), bobs);
}

TEST(JobTable, RetentionCountsTheSizeOfTheRecords) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  // 1 MiB of retained records at most: jobs with 300 KiB of arguments, three at a time.
  Harness h(dir, std::make_pair(uint32_t(1000), uint64_t(1) << 20));
  auto big = kj::heapString(300 * 1024);
  memset(big.begin(), 'x', big.size());
  kj::Vector<kj::String> ids;
  for (int i = 0; i < 6; i++) {
    kj::StringPtr argv[] = {"/nonexistent", big};
    auto& job = h.start(argv, "alice");
    job.release();
    ids.add(kj::str(job.id()));
  }
  h.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(h.io.waitScope);
  size_t kept = 0;
  for (auto& id : ids) kept += h.table->find(id) != nullptr;
  EXPECT_EQ(kept, 3u);
  EXPECT_NE(h.table->find(ids[5]), nullptr);
  EXPECT_EQ(h.table->find(ids[0]), nullptr);
}

TEST(JobTable, RetentionBoundsWhatAllOwnersKeepAndTheBiggestGivesWay) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  // Each owner may keep 10 MiB of records, all of them 1 MiB.
  Harness h(dir, std::make_pair(uint32_t(1000), uint64_t(10) << 20), uint64_t(1) << 20);
  auto big = kj::heapString(300 * 1024);
  memset(big.begin(), 'x', big.size());
  auto run = [&](kj::StringPtr owner) {
    kj::StringPtr argv[] = {"/nonexistent", big};
    auto& job = h.start(argv, owner);
    job.release();
    auto id = kj::str(job.id());
    h.io.provider->getTimer().afterDelay(5 * kj::MILLISECONDS).wait(h.io.waitScope);
    return id;
  };
  kj::Vector<kj::String> alice;
  for (int i = 0; i < 3; i++) alice.add(run("alice"));
  for (auto& id : alice) EXPECT_NE(h.table->find(id), nullptr) << "under the bound";
  // Bob's first job takes all past 1 MiB: alice, who keeps the most, gives way.
  auto bob = run("bob");
  EXPECT_NE(h.table->find(bob), nullptr);
  EXPECT_EQ(h.table->find(alice[0]), nullptr);
  EXPECT_NE(h.table->find(alice[1]), nullptr);
  EXPECT_NE(h.table->find(alice[2]), nullptr);
}

}  // namespace
}  // namespace runner

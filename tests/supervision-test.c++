// A root runnerd and the supervisor it starts, as real processes: runnerd gives up root, the jobs
// belong to the supervisor, and they outlive runnerd's crashes, restarts and the supervisor's own
// re-exec; a supervisor that crashes takes its jobs with it, leaving nothing behind.

#include <dirent.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e-support.h"

namespace runner {
namespace {

using namespace runner::testing;

// The value of `field` in /proc/PID/status ("Uid", "CapEff", ...).
std::string statusField(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size() + 1, field + ":") == 0) {
      auto value = line.substr(field.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "";
}

// Live (not zombie) processes whose command line holds `marker`, except a shell's child between
// fork and exec, which carries its parent's command line for a moment.
size_t processesMarked(const std::string& marker) {
  auto commandLine = [](const std::string& pid) {
    auto text = readWhatIsThere("/proc/" + pid + "/cmdline");
    for (auto& c : text) {
      if (c == '\0') c = ' ';
    }
    return text;
  };
  size_t found = 0;
  DIR* proc = opendir("/proc");
  KJ_ASSERT(proc != nullptr);
  while (struct dirent* entry = readdir(proc)) {
    if (atoi(entry->d_name) <= 0 || atoi(entry->d_name) == getpid()) continue;
    auto cmdline = commandLine(entry->d_name);
    if (cmdline.find(marker) == std::string::npos) continue;
    auto stat = readWhatIsThere(std::string("/proc/") + entry->d_name + "/stat");
    auto paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 4 >= stat.size()) continue;
    char state = stat[paren + 2];
    auto parent = std::to_string(atoi(stat.c_str() + paren + 4));
    if (state == 'Z' || commandLine(parent) == cmdline) continue;
    ++found;
  }
  closedir(proc);
  return found;
}

bool supervisorServesCgroup(RunnerdFixture& f) {
  return contains(f.serverLog(), "executors local, cgroup run their jobs");
}

struct Launched {
  api::Job::Client job;
  kj::String id;
};

Launched launch(RunnerdFixture& f, RunnerdFixture::Client& client, kj::StringPtr executor,
                kj::StringPtr script, kj::StringPtr marker = "", uint64_t memory = 0) {
  auto request = client.manager.startRequest();
  auto spec = request.initSpec();
  spec.setCommand("/bin/sh");
  auto args = spec.initArgs(marker.size() > 0 ? 3 : 2);
  args.set(0, "-c");
  args.set(1, script);
  if (marker.size() > 0) args.set(2, marker);
  spec.setExecutor(executor);
  if (memory > 0) spec.initLimits().setMemoryBytes(memory);
  auto response = request.send().wait(f.io.waitScope);
  KJ_ASSERT(response.getInfo().getState() == api::State::RUNNING, response.getInfo().getError());
  return {response.getJob(), kj::str(response.getInfo().getId())};
}

// Waits for the job's end through a fresh connection and returns its record.
struct End {
  api::State state;
  int exitCode;
  int termSignal;
  bool oomKilled;
  kj::String error;
};

End waitFor(RunnerdFixture& f, RunnerdFixture::Client& client, kj::StringPtr id) {
  auto get = client.manager.getRequest();
  get.setId(id);
  auto response = get.send().getJob().waitRequest().send().wait(f.io.waitScope);
  auto info = response.getInfo();
  return {info.getState(), info.getExitCode(), info.getTermSignal(), info.getOomKilled(),
          kj::str(info.getError())};
}

TEST(Supervision, RunnerdRunsAsItsOwnUserWithNoCapabilitiesAndTheSupervisorAsRoot) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  struct passwd* runner = getpwnam("runner");
  ASSERT_NE(runner, nullptr) << "scripts/install-deps creates the runner user";
  auto uid = std::to_string(runner->pw_uid);
  auto gid = std::to_string(runner->pw_gid);
  EXPECT_EQ(statusField(f.pid(), "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(statusField(f.pid(), "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(statusField(f.pid(), "Groups"), "");
  for (auto set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(statusField(f.pid(), set), "0000000000000000") << set;
  }
  EXPECT_EQ(statusField(f.pid(), "NoNewPrivs"), "1");

  pid_t supervisor = f.supervisorPid();
  ASSERT_GT(supervisor, 0);
  EXPECT_EQ(statusField(supervisor, "Uid").substr(0, 2), "0\t");
  // Its socket's directory: root's, entered by runnerd's group alone.
  struct stat st;
  auto dir = kj::str(f.dir(), "/state/supervisor");
  ASSERT_EQ(stat(dir.cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, runner->pw_gid);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  // runnerd's files are its own; the state directory, where the supervisor keeps its pid file,
  // socket and records, is root's alone.
  auto db = kj::str(f.dir(), "/state/runnerd/runner.db");
  ASSERT_EQ(stat(db.cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, runner->pw_uid);
  ASSERT_EQ(stat(kj::str(f.dir(), "/state/runnerd").cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, runner->pw_uid);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat(kj::str(f.dir(), "/state").cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0711u);

  // The jobs still run as their owners' uids.
  auto alice = f.connect("alice");
  auto job = launch(f, *alice, "local", "id -u");
  EXPECT_EQ(waitFor(f, *alice, job.id).state, api::State::EXITED);
  EXPECT_EQ(readLogs(f, *alice, job.id), kj::str(f.uidRangeFirst(), "\n"));
}

// The issue's case: kill -9 of runnerd with 50 jobs running on both executors, some writing,
// some ending (by exit code, by signal, by the OOM killer) while runnerd is down.
// An older runnerd kept its database in the state directory, which was its user's: a user who
// could write there could rename the supervisor's pid file or socket directory and put its own in
// place. The next root runnerd makes the state directory root's and moves the database into a
// directory of its own, keeping every job.
TEST(Supervision, AnOlderStateDirectoryBecomesRootsWithTheDatabaseMovedAndNoJobLost) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  struct passwd* runner = getpwnam("runner");
  ASSERT_NE(runner, nullptr);
  auto alice = f.connect("alice");
  auto job = launch(f, *alice, "local", "echo kept");
  EXPECT_EQ(waitFor(f, *alice, job.id).state, api::State::EXITED);
  alice = nullptr;
  f.stop();

  auto state = kj::str(f.dir(), "/state");
  for (auto name : {"runner.db", "runner.db-wal", "runner.db-shm"}) {
    auto from = kj::str(state, "/runnerd/", name);
    if (access(from.cStr(), F_OK) == 0) {
      KJ_SYSCALL(rename(from.cStr(), kj::str(state, '/', name).cStr()));
    }
  }
  KJ_SYSCALL(rmdir(kj::str(state, "/runnerd").cStr()));
  KJ_SYSCALL(chown(state.cStr(), runner->pw_uid, runner->pw_gid));
  KJ_SYSCALL(chmod(state.cStr(), 0711));

  f.start();
  struct stat st;
  ASSERT_EQ(stat(state.cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  EXPECT_NE(access(kj::str(state, "/runner.db").cStr(), F_OK), 0);
  ASSERT_EQ(stat(kj::str(state, "/runnerd/runner.db").cStr(), &st), 0);
  EXPECT_EQ(st.st_uid, runner->pw_uid);
  alice = f.connect("alice");
  EXPECT_EQ(waitFor(f, *alice, job.id).state, api::State::EXITED);
  EXPECT_EQ(readLogs(f, *alice, job.id), "kept\n");
}

TEST(Supervision, KillNineOfRunnerdWithFiftyRunningJobsLosesNone) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  bool cgroup = supervisorServesCgroup(f);
  struct Expected {
    kj::String id;
    kj::String output;
    api::State state;
    int exitCode = 0;
    int termSignal = 0;
    bool oom = false;
  };
  std::vector<Expected> expected;
  {
    auto alice = f.connect("alice");
    for (int k = 0; k < 50; k++) {
      kj::StringPtr executor = cgroup && k % 2 == 1 ? "cgroup"_kj : "local"_kj;
      // Short jobs end while runnerd is down, long ones after it is back.
      int lines = k % 3 == 0 ? 5 : 30;
      auto script = kj::str("i=0; while [ $i -lt ", lines, " ]; do echo \"job ", k,
                            " line $i\"; i=$((i+1)); sleep 0.1; done; ",
                            k % 5 == 0 ? kj::str("kill -USR1 $$") : kj::str("exit ", k + 1));
      kj::Vector<char> output;
      for (int i = 0; i < lines; i++) output.addAll(kj::str("job ", k, " line ", i, "\n"));
      output.add('\0');
      auto job = launch(f, *alice, executor, script);
      Expected e;
      e.id = kj::mv(job.id);
      e.output = kj::String(output.releaseAsArray());
      e.state = k % 5 == 0 ? api::State::KILLED : api::State::EXITED;
      e.exitCode = k % 5 == 0 ? 0 : k + 1;
      e.termSignal = k % 5 == 0 ? SIGUSR1 : 0;
      expected.push_back(kj::mv(e));
    }
    if (cgroup) {
      // The OOM killer ends this one while runnerd is down.
      auto job = launch(f, *alice, "cgroup", "sleep 0.5; exec tail /dev/zero", "", 32 << 20);
      Expected e;
      e.id = kj::mv(job.id);
      e.output = kj::str("");
      e.state = api::State::KILLED;
      e.termSignal = SIGKILL;
      e.oom = true;
      expected.push_back(kj::mv(e));
    }
  }
  f.crash();
  usleep(1500000);
  f.start();

  auto alice = f.connect("alice");
  // A running job's output, from the middle, while it still runs.
  auto& followed = expected[1];
  {
    auto collector = kj::heap<Collector>();
    auto& c = *collector;
    auto get = alice->manager.getRequest();
    get.setId(followed.id);
    auto watch = get.send().getJob().watchOutputRequest();
    watch.setSink(kj::mv(collector));
    watch.setFromOffset(7);
    watch.setFollow(true);
    auto handle = watch.send().wait(f.io.waitScope);
    c.whenEnded().wait(f.io.waitScope);
    EXPECT_EQ(c.text(), followed.output.slice(7));
  }
  size_t lost = 0;
  for (auto& e : expected) {
    auto end = waitFor(f, *alice, e.id);
    if (end.state == api::State::LOST) ++lost;
    EXPECT_EQ(end.state, e.state) << e.id.cStr() << ": " << end.error.cStr();
    EXPECT_EQ(end.exitCode, e.exitCode) << e.id.cStr();
    EXPECT_EQ(end.termSignal, e.termSignal) << e.id.cStr();
    EXPECT_EQ(end.oomKilled, e.oom) << e.id.cStr();
    EXPECT_EQ(readLogs(f, *alice, e.id), e.output) << e.id.cStr();
  }
  EXPECT_EQ(lost, 0u);
  std::cout << expected.size() << " jobs across a kill -9 of runnerd: " << lost << " lost"
            << std::endl;
}

// Kills runnerd at random moments, starts in flight included, and then compares every job it
// knows with what the job really did: a job whose start was answered is known; every known job's
// record (state, exit code) and output match the script it ran; no job runs unrecorded.
TEST(Supervision, RandomKillsOfRunnerdLoseNoJobAndNoByte) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  bool cgroup = supervisorServesCgroup(f);
  std::string marker = "random-kill-" + std::to_string(getpid());
  srand(getpid());
  kj::Vector<kj::String> answered;
  size_t sent = 0;
  for (int round = 0; round < 8; round++) {
    {
      auto alice = f.connect("alice");
      kj::Vector<kj::Promise<void>> starts;
      for (int k = 0; k < 8; k++) {
        // The token says what the job does: its output lines and its exit code.
        auto token = kj::str(marker, "-", round, "-", k);
        auto request = alice->manager.startRequest();
        auto spec = request.initSpec();
        spec.setCommand("/bin/sh");
        auto args = spec.initArgs(3);
        args.set(0, "-c");
        args.set(1, kj::str("i=0; while [ $i -lt ", 5 + k * 3,
                            " ]; do echo \"$0 line $i\"; i=$((i+1)); sleep 0.02; done; exit ",
                            round * 8 + k + 1));
        args.set(2, token);
        spec.setExecutor(cgroup && k % 2 == 1 ? "cgroup" : "local");
        ++sent;
        starts.add(request.send()
                       .then([&answered](auto&& response) {
                         answered.add(kj::str(response.getInfo().getId()));
                       })
                       .catch_([](kj::Exception&&) {}));
      }
      // Some starts are answered, some are under way, some not yet sent when runnerd dies.
      f.io.provider->getTimer()
          .afterDelay((rand() % 150) * kj::MILLISECONDS)
          .exclusiveJoin(kj::joinPromises(starts.releaseAsArray()))
          .wait(f.io.waitScope);
    }
    f.crash();
    usleep((rand() % 200) * 1000);
    f.start();
  }

  auto alice = f.connect("alice");
  auto list = alice->manager.listRequest();
  list.initFilter().setLimit(0);
  auto listed = list.send().wait(f.io.waitScope);
  kj::Vector<kj::String> known;
  for (auto info : listed.getJobs()) known.add(kj::str(info.getId()));
  for (auto& id : answered) {
    bool found = false;
    for (auto& k : known) found = found || k == id;
    EXPECT_TRUE(found) << "a start that was answered is unknown: " << id.cStr();
  }
  EXPECT_LE(known.size(), sent);
  size_t checked = 0;
  for (auto info : listed.getJobs()) {
    auto id = kj::str(info.getId());
    auto token = kj::str(info.getArgs()[2]);
    // <marker>-<round>-<k>
    int round = -1, k = -1;
    sscanf(token.cStr() + marker.size(), "-%d-%d", &round, &k);
    ASSERT_GE(k, 0) << token.cStr();
    auto end = waitFor(f, *alice, id);
    EXPECT_EQ(end.state, api::State::EXITED) << token.cStr() << ": " << end.error.cStr();
    EXPECT_EQ(end.exitCode, round * 8 + k + 1) << token.cStr();
    kj::Vector<char> output;
    for (int i = 0; i < 5 + k * 3; i++) output.addAll(kj::str(token, " line ", i, "\n"));
    output.add('\0');
    EXPECT_EQ(readLogs(f, *alice, id), kj::String(output.releaseAsArray())) << token.cStr();
    ++checked;
  }
  for (int i = 0; i < 500 && processesMarked(marker) != 0; i++) usleep(10000);
  EXPECT_EQ(processesMarked(marker), 0u) << "a job runs that runnerd does not know";
  std::cout << sent << " starts over 8 kills of runnerd: " << answered.size() << " answered, "
            << known.size() << " known, " << checked << " checked against what they did"
            << std::endl;
}

TEST(Supervision, ASupervisorThatIsDownFailsStartsWhileStatusListAndLogsAnswer) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  auto alice = f.connect("alice");
  auto done = launch(f, *alice, "local", "echo kept");
  waitFor(f, *alice, done.id);
  f.signalSupervisor(SIGKILL);

  auto start = alice->manager.startRequest();
  start.initSpec().setCommand("/bin/true");
  auto error = errorOf(f, start.send());
  ASSERT_NE(error, nullptr);
  EXPECT_TRUE(contains(KJ_ASSERT_NONNULL(error), "the executor 'local' is not answering"))
      << KJ_ASSERT_NONNULL(error).cStr();
  EXPECT_FALSE(contains(KJ_ASSERT_NONNULL(error), f.dir())) << "no path of the server's";
  kj::Own<capnp::Response<api::Job::InfoResults>> keep;
  EXPECT_EQ(infoOf(f, *alice, done.id, keep).getState(), api::State::EXITED);
  EXPECT_EQ(readLogs(f, *alice, done.id), "kept\n");
  auto list = alice->manager.listRequest();
  EXPECT_EQ(list.send().wait(f.io.waitScope).getJobs().size(), 1u);
}

// kill -9 of the supervisor: its jobs are killed, wholly, once a supervisor runs again (here the
// one a restarted runnerd starts), and reported lost with the reason.
TEST(Supervision, ASupervisorCrashLeavesNothingRunningAndItsJobsLost) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  bool cgroup = supervisorServesCgroup(f);
  std::string marker = "supervisor-crash-" + std::to_string(getpid());
  // A daemon leaves the job's session and process group (setsid after a double fork).
  auto script = kj::str("(setsid sh -c 'while :; do sleep 1; done' ", marker.c_str(),
                        " </dev/null >/dev/null 2>&1 &); while :; do sleep 1; done");
  auto alice = f.connect("alice");
  kj::Vector<kj::String> ids;
  ids.add(launch(f, *alice, "local", script, marker).id);
  if (cgroup) ids.add(launch(f, *alice, "cgroup", script, marker).id);
  size_t processes = ids.size() * 2;
  // Settled: while a job's shell forks its daemon, a copy of it carries the marker too, so one
  // count can be right by chance. Ten in a row (100 ms) are not.
  for (int i = 0, settled = 0; i < 500 && settled < 10; i++) {
    settled = processesMarked(marker) == processes ? settled + 1 : 0;
    usleep(10000);
  }
  ASSERT_EQ(processesMarked(marker), processes);

  f.signalSupervisor(SIGKILL);
  f.crash();
  f.start();
  for (int i = 0; i < 1000 && processesMarked(marker) != 0; i++) usleep(10000);
  EXPECT_EQ(processesMarked(marker), 0u) << "processes of the crashed supervisor's jobs remain";
  alice = f.connect("alice");
  for (auto& id : ids) {
    auto end = waitFor(f, *alice, id);
    EXPECT_EQ(end.state, api::State::LOST) << id.cStr();
    EXPECT_TRUE(contains(end.error, "supervisor")) << end.error.cStr();
    // No cgroup is left named after the job, in any hierarchy.
    for (auto hierarchy : {"freezer", "memory", "pids", "cpu,cpuacct", "blkio", "unified"}) {
      auto cgroups = kj::str("/sys/fs/cgroup/", hierarchy);
      auto found = kj::str("find ", cgroups, " -name ", id, " 2>/dev/null | grep -q .");
      EXPECT_NE(system(found.cStr()), 0) << "a cgroup of job " << id.cStr() << " in " << hierarchy;
    }
  }
}

// SIGHUP: the supervisor re-execs itself (an upgrade) and keeps its jobs; runnerd connects again
// and takes them back.
TEST(Supervision, SupervisorReexecKeepsJobsAndTheirEnds) {
  SKIP_UNLESS_SERVER_CAN_RUN();
  RunnerdFixture f;
  bool cgroup = supervisorServesCgroup(f);
  auto alice = f.connect("alice");
  auto endsDuring = launch(f, *alice, "local", "sleep 0.3; echo done; exit 42");
  auto runsOn =
      launch(f, *alice, cgroup ? "cgroup" : "local", "echo started; while :; do sleep 0.1; done");
  pid_t before = f.supervisorPid();
  f.signalSupervisor(SIGHUP);
  f.waitForLog("connected again to the executor host");
  EXPECT_EQ(f.supervisorPid(), before) << "re-exec keeps the pid";

  auto end = waitFor(f, *alice, endsDuring.id);
  EXPECT_EQ(end.state, api::State::EXITED) << end.error.cStr();
  EXPECT_EQ(end.exitCode, 42);
  EXPECT_EQ(readLogs(f, *alice, endsDuring.id), "done\n");
  kj::Own<capnp::Response<api::Job::InfoResults>> keep;
  EXPECT_EQ(infoOf(f, *alice, runsOn.id, keep).getState(), api::State::RUNNING);
  auto stopped = runsOn.job.stopRequest().send().wait(f.io.waitScope);
  EXPECT_EQ(stopped.getInfo().getState(), api::State::STOPPED);
  EXPECT_EQ(readLogs(f, *alice, runsOn.id), "started\n");
  // And new jobs start.
  auto after = launch(f, *alice, "local", "echo after");
  EXPECT_EQ(waitFor(f, *alice, after.id).state, api::State::EXITED);
}

}  // namespace
}  // namespace runner

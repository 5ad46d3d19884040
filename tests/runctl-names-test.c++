// Names, labels and id prefixes through a real runnerd: runctl as a user types it, with the
// certificates of the users the fixture made.

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>

#include <string>
#include <vector>

#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::RunctlOptions;
using testing::RunctlResult;
using testing::RunnerdFixture;

class RunctlNames : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::cannotRunServer() != nullptr) return;
    server = kj::heap<RunnerdFixture>();
  }

  static void TearDownTestSuite() { server = nullptr; }

  void SetUp() override {
    KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
      GTEST_SKIP() << reason->cStr();
    }
  }

  static RunctlResult runctl(kj::ArrayPtr<const kj::StringPtr> args, kj::StringPtr user = "alice") {
    RunctlOptions options;
    options.user = user;
    return testing::runctl(*server, args, options);
  }

  // Starts a job and returns its id.
  static std::string start(kj::ArrayPtr<const kj::StringPtr> args, kj::StringPtr user = "alice") {
    auto result = runctl(args, user);
    EXPECT_EQ(result.status, 0) << result.err;
    std::string id = result.out;
    while (!id.empty() && id.back() == '\n') id.pop_back();
    EXPECT_EQ(id.size(), 36u) << result.out << result.err;
    return id;
  }

  static kj::Own<RunnerdFixture> server;
};

kj::Own<RunnerdFixture> RunctlNames::server;

bool isOneLine(const std::string& text) {
  return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  size_t from = 0;
  while (from < text.size()) {
    size_t end = text.find('\n', from);
    if (end == std::string::npos) end = text.size();
    result.push_back(text.substr(from, end - from));
    from = end + 1;
  }
  return result;
}

TEST_F(RunctlNames, ANameIsUniquePerOwnerAndWorksWhereverAnIdDoes) {
  auto id = start({"start", "--name", "web.1", "--", "sh", "-c", "echo named-output; sleep 60"});

  auto duplicate = runctl({"start", "--name", "web.1", "true"});
  EXPECT_EQ(duplicate.status, 1);
  EXPECT_EQ(duplicate.out, "");
  EXPECT_TRUE(isOneLine(duplicate.err)) << duplicate.err;
  EXPECT_TRUE(contains(duplicate.err, "the name web.1 is in use by job " + id)) << duplicate.err;
  auto duplicateRun = runctl({"run", "--name", "web.1", "true"});
  EXPECT_EQ(duplicateRun.status, 125);
  EXPECT_TRUE(contains(duplicateRun.err, "in use by job " + id)) << duplicateRun.err;

  // Another owner may use the same name; each resolves it to their own job.
  auto bobs = start({"start", "--name", "web.1", "sleep", "60"}, "bob");
  EXPECT_NE(bobs, id);
  EXPECT_TRUE(contains(runctl({"status", "web.1"}, "bob").out, "ID:           " + bobs + "\n"));

  auto status = runctl({"status", "web.1"});
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_TRUE(contains(status.out, "ID:           " + id + "\n")) << status.out;
  EXPECT_TRUE(contains(status.out, "Name:         web.1\n")) << status.out;
  auto json = runctl({"status", "--json", "web.1"});
  EXPECT_TRUE(contains(json.out, "\"name\":\"web.1\"")) << json.out;

  // Another user reads the metadata by id, but a name is looked up among the caller's own jobs.
  auto admins = runctl({"status", "web.1"}, "admin");
  EXPECT_EQ(admins.status, 1);
  EXPECT_EQ(admins.err, "runctl: not found: job web.1\n");

  auto logs = runctl({"logs", "web.1"});
  EXPECT_EQ(logs.status, 0) << logs.err;
  EXPECT_EQ(logs.out, "named-output\n");

  auto stopped = runctl({"stop", "--grace", "2s", "web.1"});
  EXPECT_EQ(stopped.status, 0) << stopped.err;
  EXPECT_EQ(stopped.out, id + " stopped by SIGTERM\n");
  EXPECT_EQ(runctl({"wait", "web.1"}).status, 128 + SIGTERM);

  // An ended job keeps its name until it is removed; then the name is free again.
  EXPECT_EQ(runctl({"start", "--name", "web.1", "true"}).status, 1);
  auto removed = runctl({"rm", "web.1"});
  EXPECT_EQ(removed.status, 0) << removed.err;
  EXPECT_EQ(removed.out, "web.1\n");
  EXPECT_EQ(runctl({"status", id.c_str()}).status, 1);
  auto again = start({"start", "--name", "web.1", "true"});
  EXPECT_NE(again, id);
  EXPECT_EQ(runctl({"wait", "web.1"}).status, 0);
  EXPECT_EQ(runctl({"stop", bobs.c_str()}, "bob").status, 0);
}

TEST_F(RunctlNames, AUniquePrefixOfAtLeastFourCharactersNamesAJob) {
  auto id = start({"start", "--", "sh", "-c", "echo by-prefix"});
  EXPECT_EQ(runctl({"wait", id.substr(0, 12).c_str()}).status, 0);
  auto status = runctl({"status", id.substr(0, 8).c_str()});
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_TRUE(contains(status.out, "ID:           " + id + "\n")) << status.out;
  EXPECT_EQ(runctl({"logs", id.substr(0, 10).c_str()}).out, "by-prefix\n");

  auto tooShort = runctl({"status", id.substr(0, 3).c_str()});
  EXPECT_EQ(tooShort.status, 1);
  EXPECT_TRUE(isOneLine(tooShort.err)) << tooShort.err;
  EXPECT_TRUE(contains(tooShort.err, "at least 4 characters")) << tooShort.err;

  // Prefixes of other users' jobs work too (their metadata is anyone's to read).
  auto others = runctl({"status", id.substr(0, 8).c_str()}, "bob");
  EXPECT_EQ(others.status, 0) << others.err;
  EXPECT_TRUE(contains(others.out, "Owner:        alice\n")) << others.out;

  auto unknown = runctl({"status", "ffffffff-no"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_TRUE(isOneLine(unknown.err)) << unknown.err;
  EXPECT_EQ(unknown.err, "runctl: not found: job ffffffff-no\n");
}

TEST_F(RunctlNames, LabelsAreStoredAndShown) {
  auto id = start({"start", "--label", "team=infra", "--label", "tier=", "--label",
                   "app.example/part=web front", "true"});
  auto status = runctl({"status", id.c_str()});
  EXPECT_TRUE(contains(status.out, "Labels:       team=infra, tier=, app.example/part=web front\n"))
      << status.out;
  auto json = runctl({"status", "--json", id.c_str()});
  EXPECT_TRUE(contains(json.out,
                       "\"labels\":[{\"key\":\"team\",\"value\":\"infra\"},{\"key\":\"tier\","
                       "\"value\":\"\"},{\"key\":\"app.example/part\",\"value\":\"web front\"}]"))
      << json.out;
}

TEST_F(RunctlNames, BadNamesAndLabelsGetOneLineErrors) {
  struct Case {
    std::vector<kj::StringPtr> args;
    int status;
    std::string error;
  };
  std::string tooLong(65, 'n');
  std::string longValue = "k=" + std::string(257, 'v');
  std::vector<Case> cases = {
      {{"start", "--name", "has space", "true"}, 1, "only letters, digits"},
      {{"start", "--name", tooLong.c_str(), "true"}, 1, "1 to 64 characters"},
      {{"start", "--name", "beef-0123", "true"}, 1, "could be taken for a job id"},
      {{"start", "--name", "", "true"}, 2, "must not be empty"},
      {{"start", "--label", "novalue", "true"}, 2, "expected KEY=VALUE"},
      {{"start", "--label", "=v", "true"}, 2, "expected KEY=VALUE"},
      {{"start", "--label", "a b=c", "true"}, 1, "label key 'a b': only letters"},
      {{"start", "--label", "k=1", "--label", "k=2", "true"}, 1, "more than once"},
      {{"start", "--label", longValue.c_str(), "true"}, 1, "at most 256"},
      {{"start", "--label", "k=line\nbreak", "true"}, 1, "without control characters"},
      {{"list", "--state", "sleeping"}, 2, "expected one of running"},
      {{"list", "--limit", "0"}, 2, "above 0"},
      {{"list", "--label", "x"}, 2, "expected KEY=VALUE"},
  };
  std::vector<std::string> many = {"start"};
  for (int i = 0; i < 33; i++) {
    many.push_back("--label");
    many.push_back("k" + std::to_string(i) + "=v");
  }
  many.push_back("true");
  std::vector<kj::StringPtr> manyArgs;
  for (auto& arg : many) manyArgs.push_back(arg.c_str());
  cases.push_back({manyArgs, 1, "too many labels (33; at most 32)"});

  for (auto& c : cases) {
    auto result = runctl(kj::arrayPtr(c.args.data(), c.args.size()));
    EXPECT_EQ(result.status, c.status) << c.args[2].cStr() << ": " << result.err;
    EXPECT_EQ(result.out, "") << c.args[2].cStr();
    EXPECT_TRUE(isOneLine(result.err)) << c.args[2].cStr() << ": " << result.err;
    EXPECT_TRUE(contains(result.err, c.error)) << c.args[2].cStr() << ": " << result.err;
    // What runnerd refuses (exit 1) is of kind invalid; usage errors (2) are runctl's.
    if (c.status == 1) {
      EXPECT_EQ(result.err.rfind("runctl: invalid: ", 0), 0u)
          << c.args[2].cStr() << ": " << result.err;
    }
  }
  // None of them made a job.
  EXPECT_EQ(runctl({"list", "-q", "--label", "k=1"}).out, "");
}

TEST_F(RunctlNames, ListFiltersByStateLabelNameAndLimit) {
  // Jobs of their own user, so that other tests' jobs do not count.
  kj::StringPtr user = "lister";
  server->issue(user, -60, 3600);
  auto a = start({"start", "--name", "list-a", "--label", "group=g1", "--label", "kind=x", "true"},
                 user);
  auto b = start({"start", "--label", "group=g1", "sh", "-c", "exit 3"}, user);
  auto c = start({"start", "--name", "list-c", "--label", "group=g2", "sleep", "60"}, user);
  EXPECT_EQ(runctl({"wait", a.c_str()}, user).status, 0);
  EXPECT_EQ(runctl({"wait", b.c_str()}, user).status, 3);

  auto ids = [&](std::vector<kj::StringPtr> args) {
    auto result = runctl(kj::arrayPtr(args.data(), args.size()), user);
    EXPECT_EQ(result.status, 0) << result.err;
    return lines(result.out);
  };
  using Ids = std::vector<std::string>;
  EXPECT_EQ(ids({"list", "-q"}), (Ids{a, b, c}));
  EXPECT_EQ(ids({"list", "-q", "--state", "running"}), (Ids{c}));
  EXPECT_EQ(ids({"list", "-q", "--state", "exited"}), (Ids{a, b}));
  EXPECT_EQ(ids({"list", "-q", "--state", "exited", "--state", "running"}), (Ids{a, b, c}));
  EXPECT_EQ(ids({"list", "-q", "--label", "group=g1"}), (Ids{a, b}));
  EXPECT_EQ(ids({"list", "-q", "--label", "group=g1", "--label", "kind=x"}), (Ids{a}));
  EXPECT_EQ(ids({"list", "-q", "--label", "group=g3"}), Ids{});
  EXPECT_EQ(ids({"list", "-q", "--name", "list-c"}), (Ids{c}));
  EXPECT_EQ(ids({"list", "-q", "--limit", "2"}), (Ids{b, c}));
  EXPECT_EQ(ids({"list", "-q", "--limit", "1", "--label", "group=g1"}), (Ids{b}));

  // --all: every user's jobs, the filters still applying.
  auto bobs = start({"start", "--name", "list-c", "true"}, "bob");
  EXPECT_EQ(ids({"list", "-q", "--all", "--name", "list-c"}), (Ids{c, bobs}));
  EXPECT_EQ(ids({"list", "-q", "--name", "list-c"}), (Ids{c}));

  // The table shows names and labels; "-" where a job has none.
  auto table = runctl({"list"}, user);
  auto rows = lines(table.out);
  ASSERT_EQ(rows.size(), 4u) << table.out;
  EXPECT_EQ(rows[0].find("ID "), 0u) << table.out;
  EXPECT_TRUE(contains(rows[0], "  CREATED  ")) << rows[0];
  EXPECT_TRUE(contains(rows[0], "  NAME    LABELS           COMMAND")) << rows[0];
  EXPECT_TRUE(contains(rows[1], "  list-a  group=g1,kind=x  true")) << rows[1];
  EXPECT_TRUE(contains(rows[2], "  -       group=g1         sh -c 'exit 3'")) << rows[2];
  EXPECT_TRUE(contains(rows[3], "  list-c  group=g2         sleep 60")) << rows[3];

  auto json = runctl({"list", "--json", "--name", "list-a"}, user);
  EXPECT_TRUE(isOneLine(json.out)) << json.out;
  EXPECT_TRUE(contains(json.out, "\"name\":\"list-a\"")) << json.out;
  EXPECT_TRUE(contains(json.out, "{\"key\":\"kind\",\"value\":\"x\"}")) << json.out;

  EXPECT_EQ(runctl({"stop", "list-c"}, user).status, 0);
}

// Runs `sql` on runnerd's job store (runnerd must be stopped).
void editStore(RunnerdFixture& fixture, const std::string& sql) {
  auto path = kj::str(fixture.dir(), "/state/runnerd/runner.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.cStr(), &db), SQLITE_OK) << path.cStr();
  KJ_DEFER(sqlite3_close(db));
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
}

// Ids are random, so ids that share a prefix are made by renaming stored jobs while runnerd is
// down; names and labels come back with the store too.
TEST_F(RunctlNames, AnAmbiguousPrefixListsTheCandidatesAndNamesSurviveARestart) {
  auto& own = *server;
  kj::StringPtr user = "restarter";
  server->issue(user, -60, 3600);
  auto run = [&](std::vector<kj::StringPtr> args) {
    return runctl(kj::arrayPtr(args.data(), args.size()), user);
  };
  std::vector<std::string> ids;
  for (kj::StringPtr name : {"first", "second", "third"}) {
    auto result = run({"run", "--name", name, "--label", "restart=kept", "--", "echo", name});
    ASSERT_EQ(result.status, 0) << result.err;
    auto listed = run({"list", "-q", "--name", name});
    ids.push_back(listed.out.substr(0, 36));
  }
  own.stop();
  std::string prefix = "abcd0000-1111-4222-8333-00000000000";
  for (int i = 0; i < 3; i++) {
    std::string newId = prefix + std::to_string(i + 1);
    editStore(own, "UPDATE jobs SET id = '" + newId + "' WHERE id = '" + ids[i] +
                       "'; UPDATE job_events SET job_id = '" + newId + "' WHERE job_id = '" +
                       ids[i] + "';");
    auto from = kj::str(own.dir(), "/logs/", ids[i].c_str(), ".log");
    auto to = kj::str(own.dir(), "/logs/", newId.c_str(), ".log");
    ASSERT_EQ(rename(from.cStr(), to.cStr()), 0);
  }
  own.start();

  auto ambiguous = run({"status", "abcd"});
  EXPECT_EQ(ambiguous.status, 1);
  EXPECT_EQ(ambiguous.out, "");
  EXPECT_EQ(ambiguous.err, "runctl: invalid: ambiguous job id prefix abcd: it matches " + prefix +
                               "1, " + prefix + "2, " + prefix + "3\n");

  auto unique = run({"logs", (prefix + "2").c_str()});
  EXPECT_EQ(unique.out, "second\n") << unique.err;
  auto byName = run({"status", "third"});
  EXPECT_TRUE(contains(byName.out, "ID:           " + prefix + "3\n")) << byName.out;
  EXPECT_TRUE(contains(byName.out, "Labels:       restart=kept\n")) << byName.out;
  EXPECT_EQ(run({"start", "--name", "first", "true"}).status, 1);
}

}  // namespace
}  // namespace runner

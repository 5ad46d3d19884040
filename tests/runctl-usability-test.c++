// runctl's conveniences against a real runnerd: whoami, several ids at once, shell completion,
// "did you mean", --env-file, and the JSON form of times and counts.

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "certs/credential-files.h"
#include "client/command-names.h"
#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"

namespace runner {
namespace {

using testing::RunctlOptions;
using testing::RunctlResult;
using testing::RunnerdFixture;

// One runnerd for the whole suite.
class RunctlUsability : public ::testing::Test {
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

  static RunctlResult runctl(kj::ArrayPtr<const kj::StringPtr> args,
                             const RunctlOptions& options = RunctlOptions()) {
    return testing::runctl(*server, args, options);
  }

  // Starts `command` as alice's job and returns its id.
  static std::string start(kj::ArrayPtr<const kj::StringPtr> command) {
    kj::Vector<kj::StringPtr> args;
    args.add("start");
    args.add("--");
    args.addAll(command);
    auto started = runctl(args);
    KJ_ASSERT(started.status == 0, started.err);
    return trimmed(started.out);
  }

  // Runs `script` with bash as a user would: runctl on the PATH, alice's credentials and the
  // server in RUNCTL_*. Returns its exit status and its stdout and stderr together.
  static std::pair<int, std::string> shell(kj::StringPtr interpreter, std::string script) {
    auto prefix =
        kj::str("export PATH='", getenv("TEST_SRCDIR"), "/runner/client:/usr/bin:/bin'\n",
                "export RUNCTL_SERVER='", server->address(), "'\n", "export RUNCTL_CERT='",
                server->certPath("alice"), "'\n", "export RUNCTL_KEY='", server->keyPath("alice"),
                "'\n", "export RUNCTL_CA='", server->caPath(), "'\n");
    auto scriptPath = kj::str(server->dir(), "/script-", counter++);
    certs::writeFile(scriptPath, kj::str(prefix, script.c_str()), 0600, true);
    auto command = kj::str(interpreter, " ", scriptPath, " 2>&1 </dev/null");
    FILE* pipe = popen(command.cStr(), "r");
    KJ_ASSERT(pipe != nullptr);
    std::string output;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
    int status = pclose(pipe);
    unlink(scriptPath.cStr());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
  }

  static std::string trimmed(std::string text) {
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  static size_t lineCount(const std::string& text) {
    size_t count = 0;
    for (char c : text) count += c == '\n';
    return count;
  }

  static kj::Own<RunnerdFixture> server;
  static int counter;
};

kj::Own<RunnerdFixture> RunctlUsability::server;
int RunctlUsability::counter = 0;

TEST_F(RunctlUsability, WhoamiNamesTheUserAndWhetherAnAdmin) {
  auto alice = runctl({"whoami"});
  EXPECT_EQ(alice.status, 0) << alice.err;
  EXPECT_EQ(alice.out, "alice\n");
  auto admin = runctl({"whoami"}, {.user = "admin"});
  EXPECT_EQ(admin.status, 0) << admin.err;
  EXPECT_EQ(admin.out, "admin (admin)\n");
  auto json = runctl({"whoami", "--json"});
  EXPECT_EQ(json.status, 0) << json.err;
  EXPECT_EQ(json.out, "{\"user\":\"alice\",\"admin\":false}\n");
}

TEST_F(RunctlUsability, StatusAndStopTakeSeveralIdsAndGoOnPastABadOne) {
  auto first = start({"sleep", "60"});
  auto second = start({"sleep", "60"});

  auto status = runctl({"status", first.c_str(), "no-such-job", second.c_str()});
  EXPECT_EQ(status.status, 1);
  EXPECT_EQ(status.err, "runctl: not found: job no-such-job\n");
  auto firstAt = status.out.find("ID:           " + first + "\n");
  auto secondAt = status.out.find("\n\nID:           " + second + "\n");
  EXPECT_NE(firstAt, std::string::npos) << status.out;
  EXPECT_NE(secondAt, std::string::npos) << status.out;
  EXPECT_LT(firstAt, secondAt);

  auto json = runctl({"status", "--json", first.c_str(), "no-such-job", second.c_str()});
  EXPECT_EQ(json.status, 1);
  EXPECT_EQ(lineCount(json.out), 2u) << json.out;
  EXPECT_EQ(json.out.find("{\"id\":\"" + first + "\""), 0u) << json.out;
  EXPECT_NE(json.out.find("\n{\"id\":\"" + second + "\""), std::string::npos) << json.out;
  EXPECT_EQ(lineCount(json.err), 1u) << json.err;

  auto stop = runctl({"stop", "--grace", "1s", first.c_str(), "no-such-job", second.c_str()});
  EXPECT_EQ(stop.status, 1);
  EXPECT_EQ(stop.out, first + " stopped by SIGTERM\n" + second + " stopped by SIGTERM\n");
  EXPECT_EQ(stop.err, "runctl: not found: job no-such-job\n");

  auto good = runctl({"status", first.c_str(), second.c_str()});
  EXPECT_EQ(good.status, 0) << good.err;
  EXPECT_EQ(good.err, "");
}

TEST_F(RunctlUsability, WaitForSeveralJobsExitsWithTheFirstFailingCodeInOrder) {
  auto ok = start({"sh", "-c", "exit 0"});
  auto three = start({"sh", "-c", "sleep 0.5; exit 3"});
  auto five = start({"sh", "-c", "exit 5"});

  auto waited = runctl({"wait", ok.c_str(), three.c_str(), five.c_str()});
  EXPECT_EQ(waited.status, 3) << waited.err;
  EXPECT_EQ(waited.out, "");
  EXPECT_EQ(waited.err, "");
  // It waited for all of them: the slow one has ended.
  auto status = runctl({"status", "--json", three.c_str()});
  EXPECT_NE(status.out.find("\"state\":\"exited\""), std::string::npos) << status.out;

  auto json = runctl({"wait", "--json", ok.c_str(), five.c_str()});
  EXPECT_EQ(json.status, 5);
  EXPECT_EQ(lineCount(json.out), 2u) << json.out;

  auto allGood = runctl({"wait", ok.c_str(), ok.c_str()});
  EXPECT_EQ(allGood.status, 0) << allGood.err;

  // An id that cannot be waited for counts as runctl's failure, 125, after one error line.
  auto bad = runctl({"wait", ok.c_str(), "no-such-job", five.c_str()});
  EXPECT_EQ(bad.status, 125);
  EXPECT_EQ(bad.err, "runctl: not found: job no-such-job\n");
}

TEST_F(RunctlUsability, AMistypedCommandOrOptionGetsASuggestion) {
  auto command = runctl({"lst"});
  EXPECT_EQ(command.status, 2);
  EXPECT_EQ(command.err, "runctl: lst: unknown command; did you mean list?\n");
  EXPECT_EQ(command.out, "");

  auto option = runctl({"list", "--jsno"});
  EXPECT_EQ(option.status, 2);
  EXPECT_EQ(option.err, "runctl list: --jsno: unrecognized option; did you mean --json?\n");

  // `run` keeps its usage errors apart from a job's codes.
  auto runOption = runctl({"run", "--memroy", "1G", "true"});
  EXPECT_EQ(runOption.status, 125);
  EXPECT_EQ(runOption.err, "runctl run: --memroy: unrecognized option; did you mean --memory?\n");

  auto global = runctl({"--sever", "x", "list"});
  EXPECT_EQ(global.status, 2);
  EXPECT_EQ(global.err, "runctl: --sever: unrecognized option; did you mean --server?\n");

  // Nothing close: no suggestion.
  auto far = runctl({"frobnicate"});
  EXPECT_EQ(far.status, 2);
  EXPECT_EQ(far.err, "runctl: frobnicate: unknown command\n");
}

TEST_F(RunctlUsability, EnvFileInDockersFormatWithEnvOverridingIt) {
  auto path = kj::str(server->dir(), "/good.env");
  certs::writeFile(path,
                   "# settings\n"
                   "\n"
                   "A=1\n"
                   "B=from-file\n"
                   "  C=\"quoted\" # kept\n"
                   "FROM_RUNCTL\n"
                   "NOT_IN_RUNCTLS_ENVIRONMENT\n",
                   0600, true);
  auto result =
      shell("bash", std::string("FROM_RUNCTL=inherited runctl run --env-file ") + path.cStr() +
                        " -e B=from-flag -- sh -c 'echo \"$A|$B|$C|$FROM_RUNCTL|"
                        "${NOT_IN_RUNCTLS_ENVIRONMENT-unset}\"'\n");
  EXPECT_EQ(result.first, 0) << result.second;
  EXPECT_EQ(result.second, "1|from-flag|\"quoted\" # kept|inherited|unset\n");

  auto bad = kj::str(server->dir(), "/bad.env");
  certs::writeFile(bad, "A=1\nnot a name=2\n", 0600, true);
  auto start = runctl({"start", "--env-file", bad, "true"});
  EXPECT_EQ(start.status, 2);
  EXPECT_EQ(start.err, std::string("runctl start: ") + bad.cStr() +
                           ":2: expected NAME=VALUE or NAME, NAME made of letters, digits and "
                           "'_', not starting with a digit\n");
  EXPECT_EQ(start.out, "");

  auto missing = runctl({"run", "--env-file", "/nonexistent/vars.env", "true"});
  EXPECT_EQ(missing.status, 125);
  EXPECT_EQ(missing.err,
            "runctl run: /nonexistent/vars.env: cannot read: No such file or directory\n");
}

TEST_F(RunctlUsability, BashCompletionOffersCommandsOptionsAndTheCallersIdsAndNames) {
  auto named = runctl({"start", "--name", "completion-target", "--", "sleep", "60"});
  ASSERT_EQ(named.status, 0) << named.err;
  auto id = trimmed(named.out);

  auto registered = shell("bash", "source <(runctl completion bash); complete -p runctl\n");
  EXPECT_EQ(registered.first, 0) << registered.second;
  EXPECT_EQ(registered.second, "complete -F _runctl runctl\n");

  auto complete = [](std::string words, int current) {
    return shell("bash", "source <(runctl completion bash)\nCOMP_WORDS=(" + words +
                             ")\nCOMP_CWORD=" + std::to_string(current) +
                             "\n_runctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n");
  };
  auto lines = [](const std::string& text) {
    std::set<std::string> result;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) result.insert(line);
    return result;
  };

  auto commands = complete("runctl ''", 1);
  EXPECT_EQ(commands.first, 0) << commands.second;
  for (auto name : {"start", "run", "list", "status", "stop", "wait", "whoami", "completion"}) {
    EXPECT_EQ(lines(commands.second).count(name), 1u) << name << " not in " << commands.second;
  }
  EXPECT_EQ(lines(complete("runctl st", 1).second),
            (std::set<std::string>{"start", "status", "stop"}));
  EXPECT_EQ(lines(complete("runctl stop --gr", 2).second), (std::set<std::string>{"--grace="}));

  auto ids = complete("runctl status ''", 2);
  EXPECT_EQ(lines(ids.second).count(id), 1u) << id << " not in " << ids.second;
  EXPECT_EQ(lines(ids.second).count("completion-target"), 1u) << ids.second;
  EXPECT_EQ(lines(complete("runctl stop completion-t", 2).second),
            (std::set<std::string>{"completion-target"}));
  // The global options typed before the command reach the id lookup: a wrong server gives none.
  auto elsewhere = complete("runctl --server = 127.0.0.1 : 1 status ''", 7);
  EXPECT_EQ(elsewhere.second, "\n");

  EXPECT_EQ(runctl({"stop", id.c_str()}).status, 0);
}

TEST_F(RunctlUsability, ZshCompletionScriptParses) {
  if (access("/usr/bin/zsh", X_OK) != 0 && access("/bin/zsh", X_OK) != 0) {
    GTEST_SKIP() << "zsh is not installed (scripts/install-deps installs it)";
  }
  auto checked = shell("zsh",
                       "runctl completion zsh > \"$0.zsh\" && zsh -n \"$0.zsh\"; s=$?; "
                       "rm -f \"$0.zsh\"; exit $s\n");
  EXPECT_EQ(checked.first, 0) << checked.second;
  auto loaded = shell("zsh",
                      "autoload -U compinit && compinit -u -D\nsource <(runctl completion zsh)\n"
                      "print -r -- ${_comps[runctl]}\n");
  EXPECT_EQ(loaded.first, 0) << loaded.second;
  EXPECT_EQ(loaded.second, "_runctl\n");
}

// The options a --help text lists: "-f" and "--follow" for "    -f, --follow", "--grace=" for
// "    --grace=<duration>".
std::set<std::string> optionsInHelp(const std::string& help) {
  std::regex optionLine("^    (-[a-zA-Z][^ ,]*, )?(--[a-z-]+)(=.*)?$");
  std::set<std::string> options;
  std::istringstream in(help);
  for (std::string line; std::getline(in, line);) {
    std::smatch match;
    if (!std::regex_match(line, match, optionLine)) continue;
    if (match[1].matched) options.insert(line.substr(4, 2));
    options.insert(match[2].str() + (match[3].matched ? "=" : ""));
  }
  return options;
}

// What completion and "did you mean" know is what each command's --help shows (but for
// MainBuilder's own --verbose and --version, which every command has and nobody completes).
TEST_F(RunctlUsability, CommandNamesMatchEveryCommandsHelp) {
  auto global = runctl({"--help"});
  ASSERT_EQ(global.status, 0) << global.err;
  std::set<std::string> globalNames;
  for (auto option : client::globalOptionNames()) globalNames.insert(option.cStr());
  EXPECT_EQ(optionsInHelp(global.out), globalNames);

  for (auto& command : client::commandNames()) {
    if (command.name == "help") continue;
    auto help = runctl({command.name, "--help"});
    ASSERT_EQ(help.status, 0) << command.name.cStr() << ": " << help.err;
    auto fromHelp = optionsInHelp(help.out);
    fromHelp.erase("--verbose");
    fromHelp.erase("--version");
    std::set<std::string> fromTable;
    for (auto option : command.options) fromTable.insert(option.cStr());
    EXPECT_EQ(fromHelp, fromTable) << command.name.cStr();
  }
}

TEST_F(RunctlUsability, StatusJsonHasRfc3339TimesAndNumericCounts) {
  auto id = start({"sh", "-c", "printf hello"});
  EXPECT_EQ(runctl({"wait", id.c_str()}).status, 0);
  auto json = runctl({"status", "--json", id.c_str()});
  ASSERT_EQ(json.status, 0) << json.err;
  std::regex time(
      "\"createdAt\":\"(\\d{4})-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\","
      "\"createdAtMillis\":(\\d{13}),");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(json.out, match, time)) << json.out;
  // The text and the number are the same time.
  time_t seconds = std::stoll(match[2].str()) / 1000;
  struct tm utc;
  gmtime_r(&seconds, &utc);
  EXPECT_EQ(std::stoi(match[1].str()), utc.tm_year + 1900);
  for (auto key :
       {"\"startedAt\":\"", "\"endedAt\":\"", "\"outputBytes\":5,", "\"cpuUserMicros\":"}) {
    EXPECT_NE(json.out.find(key), std::string::npos) << key << " not in " << json.out;
  }
  EXPECT_EQ(json.out.find("\"outputBytes\":\""), std::string::npos) << json.out;
}

}  // namespace
}  // namespace runner

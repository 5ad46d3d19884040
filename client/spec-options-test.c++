#include "client/spec-options.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "client/test-printing.h"

namespace runner {
namespace client {
namespace {

// A ProcessContext that turns MainBuilder's usage errors into exceptions the test can read.
class TestContext final : public kj::ProcessContext {
 public:
  kj::StringPtr getProgramName() override { return "runctl run"; }
  KJ_NORETURN(void exit() override) { KJ_FAIL_ASSERT("exit"); }
  void warning(kj::StringPtr message) override {}
  void error(kj::StringPtr message) override {}
  KJ_NORETURN(void exitError(kj::StringPtr message) override) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED, kj::str(message)));
  }
  KJ_NORETURN(void exitInfo(kj::StringPtr message) override) { KJ_FAIL_ASSERT("info", message); }
  void increaseLoggingVerbosity() override {}
};

class SpecOptionsTest : public testing::Test {
 protected:
  ~SpecOptionsTest() noexcept override {}

  TestContext context;
  SpecOptions options;

  // Parses `params` like `runctl run` does.
  void parse(std::initializer_list<kj::StringPtr> params) {
    kj::MainBuilder builder(context, "test", "test");
    options.addOptions(builder);
    auto main = SpecOptions::endOptionsAtCommand(options.addCommandArgs(builder).build());
    main("runctl run", kj::arrayPtr(params.begin(), params.size()));
  }

  // The one-line usage error that parsing `params` gives.
  kj::String usageError(std::initializer_list<kj::StringPtr> params) {
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { parse(params); })) {
      kj::StringPtr description = exception->getDescription();
      return kj::heapString(description.slice(0, KJ_ASSERT_NONNULL(description.findFirst('\n'))));
    }
    ADD_FAILURE() << "expected a usage error";
    return kj::str();
  }
};

kj::String joined(kj::ArrayPtr<const kj::StringPtr> params) {
  return kj::strArray(params, " ");
}

TEST(MarkEndOfOptions, InsertsDoubleDashBeforeTheCommand) {
  kj::StringPtr params[] = {"--cpu", "1", "--isolate", "-e", "A=1", "ls", "-l", "--cpu"};
  EXPECT_EQ(joined(SpecOptions::markEndOfOptions(params)),
            "--cpu 1 --isolate -e A=1 -- ls -l --cpu");
}

TEST(MarkEndOfOptions, HandlesInlineValuesClustersAndAnExistingDoubleDash) {
  kj::StringPtr inlineValues[] = {"--memory=64M", "-eA=1", "-w", "/tmp", "sh", "-c", "x"};
  EXPECT_EQ(joined(SpecOptions::markEndOfOptions(inlineValues)),
            "--memory=64M -eA=1 -w /tmp -- sh -c x");
  kj::StringPtr dashed[] = {"--pids", "5", "--", "ls", "--", "-a"};
  EXPECT_EQ(joined(SpecOptions::markEndOfOptions(dashed)), "--pids 5 -- ls -- -a");
  kj::StringPtr onlyOptions[] = {"--help"};
  EXPECT_EQ(joined(SpecOptions::markEndOfOptions(onlyOptions)), "--help");
}

TEST_F(SpecOptionsTest, BuildsTheJobSpecFromLimitsEnvAndCommand) {
  parse({"--cpu",
         "0.5",
         "--memory=1.5G",
         "--io-read",
         "10M",
         "--io-write",
         "512K",
         "--pids",
         "64",
         "--isolate",
         "-e",
         "GREETING=hello=world",
         "--env",
         "EMPTY=",
         "-w",
         "/srv",
         "--executor",
         "local",
         "--max-output",
         "100M",
         "sh",
         "-c",
         "echo $GREETING",
         "--not-an-option"});
  auto message = options.build();
  auto spec = message->getRoot<api::JobSpec>().asReader();
  EXPECT_EQ(spec.getCommand(), "sh");
  ASSERT_EQ(spec.getArgs().size(), 3u);
  EXPECT_EQ(spec.getArgs()[1], "echo $GREETING");
  EXPECT_EQ(spec.getArgs()[2], "--not-an-option");
  EXPECT_EQ(spec.getLimits().getCpuMillicores(), 500u);
  EXPECT_EQ(spec.getLimits().getMemoryBytes(), 3ull << 29);
  EXPECT_EQ(spec.getLimits().getIoReadBytesPerSec(), 10ull << 20);
  EXPECT_EQ(spec.getLimits().getIoWriteBytesPerSec(), 512ull << 10);
  EXPECT_EQ(spec.getLimits().getPids(), 64u);
  EXPECT_TRUE(spec.getIsolation().getPid());
  EXPECT_TRUE(spec.getIsolation().getMount());
  EXPECT_TRUE(spec.getIsolation().getNet());
  ASSERT_EQ(spec.getEnv().size(), 2u);
  EXPECT_EQ(spec.getEnv()[0].getName(), "GREETING");
  EXPECT_EQ(spec.getEnv()[0].getValue(), "hello=world");
  EXPECT_EQ(spec.getEnv()[1].getName(), "EMPTY");
  EXPECT_EQ(spec.getEnv()[1].getValue(), "");
  EXPECT_EQ(spec.getWorkingDir(), "/srv");
  EXPECT_EQ(spec.getExecutor(), "local");
  EXPECT_EQ(spec.getMaxOutputBytes(), 100ull << 20);
}

TEST_F(SpecOptionsTest, DefaultsMeanNoLimitsAndNoIsolation) {
  parse({"true"});
  auto message = options.build();
  auto spec = message->getRoot<api::JobSpec>().asReader();
  EXPECT_EQ(spec.getCommand(), "true");
  EXPECT_EQ(spec.getArgs().size(), 0u);
  EXPECT_EQ(spec.getLimits().getMemoryBytes(), 0u);
  EXPECT_FALSE(spec.getIsolation().getPid());
  EXPECT_EQ(spec.getExecutor(), "");
  EXPECT_EQ(spec.getMaxOutputBytes(), 0u);
}

TEST_F(SpecOptionsTest, BadValuesAreOneLineUsageErrors) {
  EXPECT_EQ(usageError({"--memory", "64X", "true"}),
            "runctl run: --memory=64X: expected bytes or a number with a unit K, M, G or T "
            "(binary), e.g. 512K, 64M, 1.5G");
  EXPECT_EQ(usageError({"--cpu", "lots", "true"}),
            "runctl run: --cpu=lots: expected a number of CPU cores, e.g. 0.5, 2, or 250m");
  EXPECT_EQ(usageError({"--pids=1.5", "true"}), "runctl run: --pids=1.5: expected a whole number");
  EXPECT_EQ(usageError({"-e", "1A=b", "true"}),
            "runctl run: -e 1A=b: expected NAME=VALUE, NAME made of letters, digits and '_', not "
            "starting with a digit");
  EXPECT_EQ(usageError({"--workdir", "relative", "true"}),
            "runctl run: --workdir=relative: the working directory must be an absolute path");
  EXPECT_EQ(usageError({"--cpu", "1"}), "runctl run: missing argument <command>");
  EXPECT_EQ(usageError({"--max-output", "0", "true"}),
            "runctl run: --max-output=0: --max-output takes a size above 0, like --memory (e.g. "
            "100M)");
}

TEST_F(SpecOptionsTest, NameAndLabelsGoIntoTheSpec) {
  parse({"--name", "web", "--label", "team=infra", "--label=empty=", "--label", "k=a=b", "sh",
         "--name", "x"});
  auto message = options.build();
  auto spec = message->getRoot<api::JobSpec>().asReader();
  EXPECT_EQ(spec.getName(), "web");
  ASSERT_EQ(spec.getLabels().size(), 3u);
  EXPECT_EQ(spec.getLabels()[0].getKey(), "team");
  EXPECT_EQ(spec.getLabels()[0].getValue(), "infra");
  EXPECT_EQ(spec.getLabels()[1].getKey(), "empty");
  EXPECT_EQ(spec.getLabels()[1].getValue(), "");
  EXPECT_EQ(spec.getLabels()[2].getKey(), "k");
  EXPECT_EQ(spec.getLabels()[2].getValue(), "a=b");
  // Options end at the command, whose own --name is an argument.
  EXPECT_EQ(spec.getCommand(), "sh");
  ASSERT_EQ(spec.getArgs().size(), 2u);
  EXPECT_EQ(spec.getArgs()[0], "--name");
}

TEST_F(SpecOptionsTest, ALabelNeedsAKeyAndAnEqualsSign) {
  EXPECT_EQ(usageError({"--label", "novalue", "true"}),
            "runctl run: --label=novalue: expected KEY=VALUE, KEY not empty");
  EXPECT_EQ(usageError({"--label", "=v", "true"}),
            "runctl run: --label==v: expected KEY=VALUE, KEY not empty");
  EXPECT_EQ(usageError({"--name", "", "true"}),
            "runctl run: --name=: the job name must not be empty");
}

kj::Maybe<kj::StringPtr> noEnv(kj::StringPtr) {
  return nullptr;
}

TEST(EnvFile, ReadsDockersFormat) {
  kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr)> getEnv =
      [](kj::StringPtr name) -> kj::Maybe<kj::StringPtr> {
    if (name == "FROM_RUNCTL") return "inherited"_kj;
    return nullptr;
  };
  kj::Vector<kj::String> entries;
  auto error = SpecOptions::parseEnvFile("vars.env",
                                         "# a comment\n"
                                         "\n"
                                         "   \n"
                                         "  A=1\n"
                                         "QUOTED=\"two words\" # not a comment\n"
                                         "EMPTY=\n"
                                         "CRLF=x\r\n"
                                         "FROM_RUNCTL\n"
                                         "NOT_SET_ANYWHERE\n"
                                         "EQUALS=a=b\n"
                                         "LAST=no newline",
                                         getEnv, entries);
  EXPECT_TRUE(error == nullptr) << KJ_ASSERT_NONNULL(error).cStr();
  std::vector<std::string> got;
  for (auto& entry : entries) got.push_back(entry.cStr());
  EXPECT_EQ(got, (std::vector<std::string>{"A=1", "QUOTED=\"two words\" # not a comment",
                                           "EMPTY=", "CRLF=x", "FROM_RUNCTL=inherited",
                                           "EQUALS=a=b", "LAST=no newline"}));
}

TEST(EnvFile, ABadLineIsFileColonLine) {
  kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr)> getEnv = noEnv;
  for (auto content : {"A=1\nB C=2\n", "A=1\n=2\n", "A=1\n1A=2\n", "A=1\nB-C\n"}) {
    kj::Vector<kj::String> entries;
    auto error = SpecOptions::parseEnvFile("/tmp/vars.env", content, getEnv, entries);
    KJ_IF_MAYBE (message, error) {
      EXPECT_TRUE(message->startsWith("/tmp/vars.env:2: expected NAME=VALUE or NAME"))
          << message->cStr();
      EXPECT_TRUE(message->findFirst('\n') == nullptr);
    } else {
      ADD_FAILURE() << "accepted " << content;
    }
  }
}

TEST_F(SpecOptionsTest, EnvOverridesEnvFileAndTheLastLineOfANameWins) {
  char path[] = "/tmp/spec-options-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  KJ_DEFER(unlink(path));
  kj::AutoCloseFd file(fd);
  kj::StringPtr content = "A=from-file\nB=first\nB=second\nC=kept\n";
  kj::FdOutputStream(file.get()).write(content.begin(), content.size());

  parse({"-e", "A=from-flag", "--env-file", path, "true"});
  EXPECT_TRUE(options.loadEnvFiles(noEnv).getError() == nullptr);
  auto message = options.build();
  auto env = message->getRoot<api::JobSpec>().asReader().getEnv();
  ASSERT_EQ(env.size(), 3u);
  EXPECT_EQ(env[0].getName(), "A");
  EXPECT_EQ(env[0].getValue(), "from-flag");
  EXPECT_EQ(env[1].getName(), "B");
  EXPECT_EQ(env[1].getValue(), "second");
  EXPECT_EQ(env[2].getName(), "C");
  EXPECT_EQ(env[2].getValue(), "kept");
}

TEST_F(SpecOptionsTest, AMissingEnvFileIsOneLine) {
  parse({"--env-file", "/nonexistent/vars.env", "true"});
  auto error = KJ_ASSERT_NONNULL(options.loadEnvFiles(noEnv).releaseError());
  EXPECT_EQ(error, "/nonexistent/vars.env: cannot read: No such file or directory");
}

}  // namespace
}  // namespace client
}  // namespace runner

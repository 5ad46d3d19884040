#include "client/command-names.h"

#include <gtest/gtest.h>
#include <kj/debug.h>

#include "client/test-printing.h"

namespace runner {
namespace client {
namespace {

TEST(ClosestName, OneOrTwoEditsAway) {
  kj::StringPtr names[] = {"list", "logs", "status", "stop", "start", "rm", "run"};
  EXPECT_EQ(KJ_ASSERT_NONNULL(closestName("lst", names)), "list");
  EXPECT_EQ(KJ_ASSERT_NONNULL(closestName("stauts", names)), "status");
  EXPECT_EQ(KJ_ASSERT_NONNULL(closestName("lgos", names)), "logs");
  EXPECT_EQ(KJ_ASSERT_NONNULL(closestName("statsu", names)), "status");
  EXPECT_TRUE(closestName("frobnicate", names) == nullptr);
  // Two edits turn any two letters into "rm": too far to mean anything.
  EXPECT_TRUE(closestName("xy", names) == nullptr);
}

TEST(SuggestCorrection, UnknownCommandsAndOptions) {
  EXPECT_EQ(suggestCorrection("runctl: lst: unknown command\nTry 'runctl --help' for more "
                              "information."),
            "runctl: lst: unknown command; did you mean list?\nTry 'runctl --help' for more "
            "information.");
  EXPECT_EQ(suggestCorrection("runctl start: --memroy: unrecognized option"),
            "runctl start: --memroy: unrecognized option; did you mean --memory?");
  EXPECT_EQ(suggestCorrection("runctl list: --jsno: unrecognized option"),
            "runctl list: --jsno: unrecognized option; did you mean --json?");
  EXPECT_EQ(suggestCorrection("runctl: --sever: unrecognized option"),
            "runctl: --sever: unrecognized option; did you mean --server?");
  // Nothing close, or not a mistyped name: unchanged.
  EXPECT_EQ(suggestCorrection("runctl: frobnicate: unknown command"),
            "runctl: frobnicate: unknown command");
  EXPECT_EQ(suggestCorrection("runctl stop: missing argument <id>"),
            "runctl stop: missing argument <id>");
  EXPECT_EQ(suggestCorrection("runctl logs: -x: unrecognized option"),
            "runctl logs: -x: unrecognized option");
}

TEST(CommandNames, EveryCommandHasHelpAndIdsWhereExpected) {
  for (auto& command : commandNames()) {
    if (command.name == "help") continue;
    bool hasHelp = false;
    for (auto option : command.options) hasHelp = hasHelp || option == "--help";
    EXPECT_TRUE(hasHelp) << command.name.cStr();
    bool ids = command.name == "logs" || command.name == "status" || command.name == "wait" ||
               command.name == "stop" || command.name == "rm" || command.name == "kill";
    EXPECT_EQ(command.takesJobIds, ids) << command.name.cStr();
  }
}

}  // namespace
}  // namespace client
}  // namespace runner

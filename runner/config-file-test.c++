// The configuration file's syntax: what it splits into keys and values, and the one line it
// fails with on anything else.

#include "runner/config-file.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <unistd.h>

namespace runner {
namespace {

kj::String failure(kj::StringPtr text) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { parseConfigFile("runnerd.conf", text); })) {
    return kj::str(e->getDescription());
  }
  return kj::str("(parsed)");
}

TEST(ConfigFile, SplitsKeysFromValuesWithEqualsOrBlanksAndSkipsCommentsAndBlankLines) {
  auto entries = parseConfigFile("runnerd.conf",
                                 "# runnerd\n"
                                 "\n"
                                 "listen = 0.0.0.0:7443\n"
                                 "  admin alice   # the first admin\n"
                                 "admin\tbob\r\n"
                                 "max-output=1G\n"
                                 "   \t\n"
                                 "tls-cert /etc/runner/a#b.pem");
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].key, "listen");
  EXPECT_EQ(entries[0].value, "0.0.0.0:7443");
  EXPECT_EQ(entries[0].line, 3u);
  EXPECT_EQ(entries[1].key, "admin");
  EXPECT_EQ(entries[1].value, "alice");
  EXPECT_EQ(entries[1].line, 4u);
  EXPECT_EQ(entries[2].value, "bob");
  EXPECT_EQ(entries[3].key, "max-output");
  EXPECT_EQ(entries[3].value, "1G");
  // A '#' inside a value is part of it: only one at the start or after a blank opens a comment.
  EXPECT_EQ(entries[4].value, "/etc/runner/a#b.pem");
  EXPECT_EQ(entries[4].line, 8u);
}

TEST(ConfigFile, AValueKeepsItsInnerBlanksAndAnEqualsSignAfterTheFirst) {
  auto entries = parseConfigFile("f", "executor-socket = gpu=/run/gpu.sock\nx = a b\n");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].value, "gpu=/run/gpu.sock");
  EXPECT_EQ(entries[1].value, "a b");
}

TEST(ConfigFile, ALineThatIsNotASettingFailsWithFileAndLine) {
  EXPECT_EQ(failure("listen = x\nadmin\n"), "runnerd.conf:2: admin has no value");
  EXPECT_EQ(failure("admin =   # nobody\n"), "runnerd.conf:1: admin has no value");
  EXPECT_EQ(failure("\n\n--listen = x\n"), "runnerd.conf:3: write a key without its leading --");
  EXPECT_EQ(failure("= x\n"),
            "runnerd.conf:1: expected KEY = VALUE, a key being one of runnerd's long flags");
  EXPECT_EQ(failure("Listen x\n"),
            "runnerd.conf:1: expected KEY = VALUE, a key being one of runnerd's long flags");
  EXPECT_EQ(failure("listen:x\n"),
            "runnerd.conf:1: a key is lower-case letters, digits and '-', then '=' or a blank");
  EXPECT_EQ(failure(kj::StringPtr("admin a\0b\n", 10)),
            "runnerd.conf:1: the value of admin holds a NUL byte");
}

TEST(ConfigFile, AnEmptyFileHasNoSettings) {
  EXPECT_EQ(parseConfigFile("f", "").size(), 0u);
  EXPECT_EQ(parseConfigFile("f", "# only a comment\n\n").size(), 0u);
}

TEST(ConfigFile, AFileThatCannotBeReadFailsWithOneLine) {
  EXPECT_EQ(
      []() {
        KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                            []() { readConfigFile("/nonexistent/runnerd.conf"); })) {
          return kj::str(e->getDescription());
        }
        return kj::str("(read)");
      }(),
      "cannot read /nonexistent/runnerd.conf: No such file or directory");
}

TEST(ConfigFile, ReadsAFileFromDisk) {
  char path[] = "/tmp/config-file-test.XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  kj::StringPtr text = "grace 3\n";
  ASSERT_EQ(write(fd, text.begin(), text.size()), ssize_t(text.size()));
  close(fd);
  auto entries = readConfigFile(path);
  unlink(path);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].key, "grace");
  EXPECT_EQ(entries[0].value, "3");
}

}  // namespace
}  // namespace runner

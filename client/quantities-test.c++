#include "client/quantities.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace runner {
namespace client {
namespace {

template <typename T>
T valueOf(kj::Maybe<T> maybe) {
  KJ_IF_MAYBE (value, maybe) {
    return *value;
  }
  ADD_FAILURE() << "expected a value";
  return 0;
}

TEST(ParseSize, AcceptsPlainBytesAndBinaryUnits) {
  EXPECT_EQ(valueOf(parseSize("0")), 0u);
  EXPECT_EQ(valueOf(parseSize("1048576")), 1048576u);
  EXPECT_EQ(valueOf(parseSize("512K")), 512u * 1024);
  EXPECT_EQ(valueOf(parseSize("64M")), 64u * 1024 * 1024);
  EXPECT_EQ(valueOf(parseSize("1G")), 1024u * 1024 * 1024);
  EXPECT_EQ(valueOf(parseSize("2T")), 2ull << 40);
  EXPECT_EQ(valueOf(parseSize("64m")), 64u * 1024 * 1024);
}

TEST(ParseSize, ToleratesIAndBSuffixes) {
  EXPECT_EQ(valueOf(parseSize("64Mi")), 64u << 20);
  EXPECT_EQ(valueOf(parseSize("64MiB")), 64u << 20);
  EXPECT_EQ(valueOf(parseSize("64MB")), 64u << 20);
  EXPECT_EQ(valueOf(parseSize("100B")), 100u);
}

TEST(ParseSize, FractionsNeedAUnitAndRoundDown) {
  EXPECT_EQ(valueOf(parseSize("1.5G")), 3ull << 29);
  EXPECT_EQ(valueOf(parseSize("0.5K")), 512u);
  EXPECT_EQ(valueOf(parseSize("0.1K")), 102u);
  EXPECT_TRUE(parseSize("1.5") == nullptr);
  EXPECT_TRUE(parseSize("1.5B") == nullptr);
}

TEST(ParseSize, RejectsGarbageNegativesAndOverflow) {
  for (auto bad : {"", "M", "-1", "+5", "64X", "64 M", " 64M", "64M ", "1.G", ".5G", "1e6",
                   "64MiBB", "64iB", "0x10", "18446744073709551616", "16777216T"}) {
    EXPECT_TRUE(parseSize(bad) == nullptr) << bad;
  }
  EXPECT_EQ(valueOf(parseSize("18446744073709551615")), UINT64_MAX);
}

TEST(ParseCores, ConvertsCoresToMillicores) {
  EXPECT_EQ(valueOf(parseCores("2")), 2000u);
  EXPECT_EQ(valueOf(parseCores("0.5")), 500u);
  EXPECT_EQ(valueOf(parseCores("1.25")), 1250u);
  EXPECT_EQ(valueOf(parseCores("0.001")), 1u);
  EXPECT_EQ(valueOf(parseCores("0")), 0u);
  EXPECT_EQ(valueOf(parseCores("250m")), 250u);
}

TEST(ParseCores, RejectsBadValues) {
  for (auto bad : {"", "-1", "half", "0.0005", "1.5m", "2 ", "2c", "m", "4294968"}) {
    EXPECT_TRUE(parseCores(bad) == nullptr) << bad;
  }
}

TEST(ParseDuration, AcceptsUnitsAndPlainSeconds) {
  EXPECT_EQ(valueOf(parseDuration("500ms")), 500u);
  EXPECT_EQ(valueOf(parseDuration("10s")), 10000u);
  EXPECT_EQ(valueOf(parseDuration("2m")), 120000u);
  EXPECT_EQ(valueOf(parseDuration("1h")), 3600000u);
  EXPECT_EQ(valueOf(parseDuration("10")), 10000u);
  EXPECT_EQ(valueOf(parseDuration("1.5")), 1500u);
  EXPECT_EQ(valueOf(parseDuration("1.5s")), 1500u);
  EXPECT_EQ(valueOf(parseDuration("1h30m")), 5400000u);
  EXPECT_EQ(valueOf(parseDuration("7d")), 604800000u);
  EXPECT_EQ(valueOf(parseDuration("1d12h")), 129600000u);
  EXPECT_EQ(valueOf(parseDuration("1m0.5s")), 60500u);
  EXPECT_EQ(valueOf(parseDuration("0")), 0u);
}

TEST(ParseDuration, RejectsBadValues) {
  for (auto bad : {"", "s", "-1s", "10x", "10 s", "1h30", "ms", "10sec", "1w", "5.s", "1dd"}) {
    EXPECT_TRUE(parseDuration(bad) == nullptr) << bad;
  }
}

TEST(ParseCount, AcceptsWholeNumbersThatFit32Bits) {
  EXPECT_EQ(valueOf(parseCount("0")), 0u);
  EXPECT_EQ(valueOf(parseCount("100")), 100u);
  EXPECT_EQ(valueOf(parseCount("4294967295")), UINT32_MAX);
  for (auto bad : {"", "-1", "1.5", "4294967296", "10k", "ten"}) {
    EXPECT_TRUE(parseCount(bad) == nullptr) << bad;
  }
}

TEST(ParseSignal, TakesNamesWithOrWithoutSigInAnyCaseAndNumbers) {
  EXPECT_EQ(valueOf(parseSignal("KILL")), SIGKILL);
  EXPECT_EQ(valueOf(parseSignal("SIGUSR1")), SIGUSR1);
  EXPECT_EQ(valueOf(parseSignal("usr2")), SIGUSR2);
  EXPECT_EQ(valueOf(parseSignal("SigHup")), SIGHUP);
  EXPECT_EQ(valueOf(parseSignal("9")), 9);
  EXPECT_EQ(valueOf(parseSignal("0")), 0);
  EXPECT_EQ(valueOf(parseSignal("RTMIN")), SIGRTMIN);
  EXPECT_EQ(valueOf(parseSignal("SIGRTMIN+2")), SIGRTMIN + 2);
  EXPECT_EQ(valueOf(parseSignal("rtmax-1")), SIGRTMAX - 1);
  for (auto bad : {"", "SIG", "FOO", "SIGFOO", "-9", "9x", "12345", "RTMIN+", "RTMIN-1", "RTMIN+99",
                   "USR1 "}) {
    EXPECT_TRUE(parseSignal(bad) == nullptr) << bad;
  }
}

}  // namespace
}  // namespace client
}  // namespace runner

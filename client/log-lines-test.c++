#include "client/log-lines.h"

#include <gtest/gtest.h>

#include <string>

namespace runner {
namespace client {
namespace {

int64_t timeOf(kj::Maybe<int64_t> maybe) {
  KJ_IF_MAYBE (value, maybe) {
    return *value;
  }
  ADD_FAILURE() << "expected a time";
  return -1;
}

// 2026-12-02T02:00:00Z
constexpr int64_t T0 = 1796176800000;

OutputTimeIndex index(std::initializer_list<TimedOffset> samples) {
  OutputTimeIndex times;
  times.replace(kj::heapArray<TimedOffset>(samples));
  return times;
}

kj::ArrayPtr<const kj::byte> bytes(const char* text) {
  return kj::StringPtr(text).asBytes();
}

std::string text(const kj::Vector<kj::byte>& out) {
  return std::string(reinterpret_cast<const char*>(out.begin()), out.size());
}

TEST(ParseLogTime, TakesRfc3339AndDurationsAgo) {
  EXPECT_EQ(timeOf(parseLogTime("2026-12-02T02:00:00Z", 0)), T0);
  EXPECT_EQ(timeOf(parseLogTime("2026-12-02t02:00:00.25z", 0)), T0 + 250);
  EXPECT_EQ(timeOf(parseLogTime("2026-12-02T03:30:00.123456+01:30", 0)), T0 + 123);
  EXPECT_EQ(timeOf(parseLogTime("2026-12-01T23:00:00-03:00", 0)), T0);
  EXPECT_EQ(timeOf(parseLogTime("10s", T0)), T0 - 10000);
  EXPECT_EQ(timeOf(parseLogTime("1h30m", T0)), T0 - 5400000);
  EXPECT_EQ(timeOf(parseLogTime("0", T0)), T0);
  for (auto bad : {"", "yesterday", "2026-12-02", "2026-12-02T02:00:00", "2026-13-02T02:00:00Z",
                   "2026-12-02T24:00:00Z", "2026-12-02T02:00:00.Z", "2026-12-02T02:00:00+1",
                   "2026-12-02T02:00:00Zx", "-5s"}) {
    EXPECT_TRUE(parseLogTime(bad, T0) == nullptr) << bad;
  }
}

TEST(OutputTimeIndex, ByteTimesAndWhereATimeBegins) {
  auto times = index({{10, T0}, {20, T0 + 100}, {25, T0 + 300}});
  EXPECT_EQ(timeOf(times.timeOf(0)), T0);
  EXPECT_EQ(timeOf(times.timeOf(9)), T0);
  EXPECT_EQ(timeOf(times.timeOf(10)), T0 + 100);
  EXPECT_EQ(timeOf(times.timeOf(24)), T0 + 300);
  EXPECT_TRUE(times.timeOf(25) == nullptr);
  EXPECT_EQ(times.offsetSince(T0 - 5), 0u);
  EXPECT_EQ(times.offsetSince(T0), 0u);
  EXPECT_EQ(times.offsetSince(T0 + 1), 10u);
  EXPECT_EQ(times.offsetSince(T0 + 300), 20u);
  EXPECT_EQ(times.offsetSince(T0 + 301), 25u);
  EXPECT_EQ(OutputTimeIndex().offsetSince(T0), 0u);
}

TEST(LineEditor, PrefixesEachLineWithItsFirstBytesTime) {
  auto times = index({{4, T0}, {8, T0 + 1500}});
  LineEditor editor(0, false, true, nullptr);
  kj::Vector<kj::byte> out;
  // Split inside a line: the second half gets no prefix.
  EXPECT_TRUE(editor.feed(bytes("one\ntw"), times, 0, out));
  EXPECT_TRUE(editor.feed(bytes("o\nx"), times, T0 + 9000, out));
  EXPECT_EQ(text(out),
            "2026-12-02T02:00:00.000Z one\n"
            "2026-12-02T02:00:01.500Z two\n"
            "2026-12-02T02:00:09.000Z x");
}

TEST(LineEditor, SkipsTheLineBegunBeforeTheStartAndStopsAfterUntil) {
  auto times = index({{6, T0}, {12, T0 + 1000}, {18, T0 + 2000}});
  // Starting at byte 3 ("c\n" ends a line begun before): read from byte 2.
  LineEditor editor(2, true, false, T0 + 1000);
  kj::Vector<kj::byte> out;
  EXPECT_TRUE(editor.feed(bytes("c\ndef\n"), times, 0, out));
  EXPECT_FALSE(editor.feed(bytes("ghi\njkl\n"), times, 0, out));
  EXPECT_EQ(text(out), "def\nghi\n");
  // Starting right after a newline keeps the next line.
  LineEditor afterNewline(5, true, false, nullptr);
  kj::Vector<kj::byte> all;
  EXPECT_TRUE(afterNewline.feed(bytes("\nxyz"), times, 0, all));
  EXPECT_EQ(text(all), "xyz");
}

TEST(LineEditor, TellsWhichLineNeedsATime) {
  LineEditor editor(100, false, true, nullptr);
  EXPECT_EQ(timeOf(editor.lastLineStart(bytes("ab\ncd\n"))), 103);
  EXPECT_EQ(timeOf(editor.lastLineStart(bytes("abc"))), 100);
  LineEditor plain(100, false, false, nullptr);
  EXPECT_TRUE(plain.lastLineStart(bytes("ab\ncd")) == nullptr);
}

TEST(LineStarts, KeepsTheWantedStartFromTheEnd) {
  // "a\nbb\nccc\nd" (10 bytes): lines begin at 0, 2, 5 and 9.
  auto data = bytes("a\nbb\nccc\nd");
  {
    LineStarts starts(0, 10, 10, 2);
    EXPECT_FALSE(starts.feed(0, data));
    EXPECT_EQ(starts.count(), 4u);
    EXPECT_EQ(timeOf(starts.wanted()), 5);
  }
  {
    // From byte 4 (read from byte 3): only 5 and 9 begin in [4, 10).
    LineStarts starts(4, 10, 10, 3);
    starts.feed(3, data.slice(3, 10));
    EXPECT_EQ(starts.count(), 2u);
    EXPECT_TRUE(starts.wanted() == nullptr);
  }
  {
    // The end is not a line start: "x\n" has one line.
    LineStarts starts(0, 2, 2, 1);
    starts.feed(0, bytes("x\n"));
    EXPECT_EQ(starts.count(), 1u);
    EXPECT_EQ(timeOf(starts.wanted()), 0);
  }
  {
    // A huge count keeps memory to the range.
    LineStarts starts(0, 10, 10, 1000000000);
    starts.feed(0, data);
    EXPECT_EQ(starts.count(), 4u);
  }
}

}  // namespace
}  // namespace client
}  // namespace runner

// The terminal escaping scheme: what it escapes, how, and that it can be read back to exactly the
// bytes it was given.

#include "client/terminal-text.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <stdint.h>

#include "client/test-printing.h"

namespace runner {
namespace client {
namespace {

// The bytes of a string literal without its terminating NUL, embedded NULs included.
template <size_t n>
kj::String bytes(const char (&literal)[n]) {
  return kj::heapString(literal, n - 1);
}

// Reads escaped text back as bash reads $'...' (in a UTF-8 locale); fails on anything the scheme
// never produces.
kj::String unescape(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 1);
  auto hex = [&](size_t at, size_t digits) {
    KJ_ASSERT(at + digits <= text.size(), text);
    uint32_t value = 0;
    for (size_t i = at; i < at + digits; i++) {
      char c = text[i];
      KJ_ASSERT(('0' <= c && c <= '9') || ('a' <= c && c <= 'f'), text);
      value = value * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return value;
  };
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '\\') {
      out.add(text[i]);
      continue;
    }
    KJ_ASSERT(i + 1 < text.size(), text);
    char kind = text[++i];
    switch (kind) {
      case '\\':
        out.add('\\');
        break;
      case 'n':
        out.add('\n');
        break;
      case 't':
        out.add('\t');
        break;
      case 'r':
        out.add('\r');
        break;
      case 'e':
        out.add('\x1b');
        break;
      case 'x':
        out.add(static_cast<char>(hex(i + 1, 2)));
        i += 2;
        break;
      case 'u': {
        uint32_t codePoint = hex(i + 1, 4);
        i += 4;
        if (codePoint < 0x800) {
          out.add(static_cast<char>(0xc0 | (codePoint >> 6)));
        } else {
          out.add(static_cast<char>(0xe0 | (codePoint >> 12)));
          out.add(static_cast<char>(0x80 | ((codePoint >> 6) & 0x3f)));
        }
        out.add(static_cast<char>(0x80 | (codePoint & 0x3f)));
        break;
      }
      default:
        KJ_FAIL_ASSERT("unknown escape", text);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// Whether a terminal would act on anything in `text`: a C0 control, DEL, or a C1 control in
// UTF-8. (A byte 0x80-0x9f of its own is not UTF-8, so escaped text never holds one outside a
// longer character.)
bool hasRawControls(kj::StringPtr text) {
  for (size_t i = 0; i < text.size(); i++) {
    auto byte = static_cast<uint8_t>(text[i]);
    if (byte < 0x20 || byte == 0x7f) return true;
    if (byte == 0xc2 && i + 1 < text.size() && static_cast<uint8_t>(text[i + 1]) <= 0x9f) {
      return true;
    }
  }
  return false;
}

TEST(TerminalText, PrintableTextIsKeptAsItIs) {
  for (kj::StringPtr text :
       {"alice", "sh -c 'echo hi' > /tmp/x", "Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
        "emoji \xf0\x9f\x98\x80", ""}) {
    EXPECT_EQ(escapeForTerminal(text), text);
    EXPECT_FALSE(needsEscapes(text)) << text.cStr();
  }
}

TEST(TerminalText, CommonControlsHaveShortEscapes) {
  EXPECT_EQ(escapeForTerminal("a\nb"), "a\\nb");
  EXPECT_EQ(escapeForTerminal("a\tb"), "a\\tb");
  EXPECT_EQ(escapeForTerminal("a\rb"), "a\\rb");
  EXPECT_EQ(escapeForTerminal("\x1b[2J\x1b[31mred"), "\\e[2J\\e[31mred");
  EXPECT_TRUE(needsEscapes("a\nb"));
  EXPECT_TRUE(needsEscapes("\x1b"));
}

TEST(TerminalText, OtherAsciiControlsAreHex) {
  EXPECT_EQ(escapeForTerminal(bytes("a\0b")), "a\\x00b");
  EXPECT_EQ(escapeForTerminal("bell\x07"), "bell\\x07");
  EXPECT_EQ(escapeForTerminal("\x08\x0b\x0c\x1f"), "\\x08\\x0b\\x0c\\x1f");
  EXPECT_EQ(escapeForTerminal("del\x7f"), "del\\x7f");
  EXPECT_TRUE(needsEscapes("del\x7f"));
}

TEST(TerminalText, ABackslashIsDoubledSoThatEscapesAreUnambiguous) {
  // A literal backslash-n and a newline must look different.
  EXPECT_EQ(escapeForTerminal("C:\\new"), "C:\\\\new");
  EXPECT_EQ(escapeForTerminal("C:\nnew"), "C:\\nnew");
  EXPECT_EQ(escapeForTerminal("\\x1b"), "\\\\x1b");
  // Backslashes alone need no $'...' quoting (see formatCommandLine()).
  EXPECT_FALSE(needsEscapes("C:\\new"));
}

TEST(TerminalText, C1ControlsAndInvisibleReorderingAreUnicodeEscapes) {
  EXPECT_EQ(escapeForTerminal("\u009b31m"), "\\u009b31m");  // CSI
  EXPECT_EQ(escapeForTerminal("a\u0085b"), "a\\u0085b");    // NEL
  EXPECT_EQ(escapeForTerminal("\xc2\x80\xc2\x9f"), "\\u0080\\u009f");
  EXPECT_EQ(escapeForTerminal("evil\xe2\x80\xaetxt.sh"), "evil\\u202etxt.sh");  // RLO
  EXPECT_EQ(escapeForTerminal("a\u2028b\u2029"), "a\\u2028b\\u2029");
  EXPECT_EQ(escapeForTerminal("\xe2\x81\xa6\xe2\x81\xa9\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c"),
            "\\u2066\\u2069\\u200e\\u200f\\u061c");
  // Just outside the escaped ranges: kept.
  EXPECT_EQ(escapeForTerminal("\xc2\xa0\xe2\x80\xa7\xe2\x81\xaa"),
            "\xc2\xa0\xe2\x80\xa7\xe2\x81\xaa");
  EXPECT_TRUE(needsEscapes("\xc2\x9b"));
  EXPECT_TRUE(needsEscapes("\xe2\x80\xae"));
}

TEST(TerminalText, BytesThatAreNotUtf8AreHex) {
  EXPECT_EQ(escapeForTerminal("\xff"), "\\xff");
  EXPECT_EQ(escapeForTerminal("\x9b[31m"), "\\x9b[31m");            // a C1 control as one byte
  EXPECT_EQ(escapeForTerminal("\x80"), "\\x80");                    // a lone continuation byte
  EXPECT_EQ(escapeForTerminal("a\xc3"), "a\\xc3");                  // cut short at the end
  EXPECT_EQ(escapeForTerminal("\xc3(x"), "\\xc3(x");                // cut short by ASCII
  EXPECT_EQ(escapeForTerminal("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(escapeForTerminal("\xe0\x80\x8a"), "\\xe0\\x80\\x8a");  // overlong newline
  EXPECT_EQ(escapeForTerminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(escapeForTerminal("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(escapeForTerminal("\xf8\x88\x80\x80\x80"), "\\xf8\\x88\\x80\\x80\\x80");
  EXPECT_TRUE(needsEscapes("\xff"));
}

TEST(TerminalText, EveryShortByteStringReadsBackExactlyAndDrivesNoTerminal) {
  // All strings of one and two bytes, and a sample of three- and four-byte ones: each escapes to
  // text without controls that reads back to the same bytes, so no two escape alike.
  auto check = [](kj::StringPtr text) {
    auto escaped = escapeForTerminal(text);
    ASSERT_FALSE(hasRawControls(escaped)) << escaped.cStr();
    ASSERT_EQ(unescape(escaped), text) << escaped.cStr();
  };
  char buffer[5] = {};
  for (int a = 0; a < 256; a++) {
    buffer[0] = char(a);
    check(kj::heapString(buffer, 1));
    for (int b = 0; b < 256; b++) {
      buffer[1] = char(b);
      check(kj::heapString(buffer, 2));
    }
  }
  uint32_t state = 12345;
  for (int i = 0; i < 200000; i++) {
    state = state * 1103515245 + 12345;
    for (int j = 0; j < 4; j++) buffer[j] = char((state >> (j * 8)) ^ (state >> 16));
    check(kj::heapString(buffer, 3 + i % 2));
  }
  // Every character that UTF-8 can hold, once.
  for (uint32_t codePoint = 0x80; codePoint <= 0x10ffff; codePoint++) {
    if (codePoint >= 0xd800 && codePoint <= 0xdfff) continue;
    size_t length;
    if (codePoint < 0x800) {
      buffer[0] = char(0xc0 | (codePoint >> 6));
      length = 2;
    } else if (codePoint < 0x10000) {
      buffer[0] = char(0xe0 | (codePoint >> 12));
      buffer[1] = char(0x80 | ((codePoint >> 6) & 0x3f));
      length = 3;
    } else {
      buffer[0] = char(0xf0 | (codePoint >> 18));
      buffer[1] = char(0x80 | ((codePoint >> 12) & 0x3f));
      buffer[2] = char(0x80 | ((codePoint >> 6) & 0x3f));
      length = 4;
    }
    buffer[length - 1] = char(0x80 | (codePoint & 0x3f));
    check(kj::heapString(buffer, length));
  }
}

TEST(TerminalText, CharacterCountCountsCharactersNotBytes) {
  EXPECT_EQ(characterCount(""), 0u);
  EXPECT_EQ(characterCount("alice"), 5u);
  EXPECT_EQ(characterCount("Jos\xc3\xa9"), 4u);
  EXPECT_EQ(characterCount("\xe6\x97\xa5\xe6\x9c\xac"), 2u);
  EXPECT_EQ(characterCount("\xf0\x9f\x98\x80"), 1u);
  // A byte that is not part of UTF-8 is one character (escaped text never holds one).
  EXPECT_EQ(characterCount("a\xff"
                           "b"),
            3u);
  EXPECT_EQ(characterCount("\xe6\x97"), 2u);
  // Escaped text takes as many columns as it has characters.
  EXPECT_EQ(characterCount(escapeForTerminal("Jos\xc3\xa9\n\x1b")), 8u);
}

}  // namespace
}  // namespace client
}  // namespace runner

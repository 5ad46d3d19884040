#include "client/terminal-text.h"

#include <kj/vector.h>
#include <stdint.h>

namespace runner {
namespace client {

namespace {

// The length of the UTF-8 sequence at the start of `text`, storing its code point in
// `codePoint`; 0 when `text` does not start with one. Strict (RFC 3629): no overlong forms, no
// surrogates, nothing above U+10FFFF.
size_t decodeUtf8(kj::ArrayPtr<const char> text, uint32_t& codePoint) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  uint8_t first = byte(0);
  size_t length;
  uint32_t minimum;
  if (first < 0x80) {
    codePoint = first;
    return 1;
  } else if (first >= 0xc2 && first <= 0xdf) {
    length = 2, minimum = 0x80, codePoint = first & 0x1f;
  } else if (first >= 0xe0 && first <= 0xef) {
    length = 3, minimum = 0x800, codePoint = first & 0x0f;
  } else if (first >= 0xf0 && first <= 0xf4) {
    length = 4, minimum = 0x10000, codePoint = first & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; i++) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    codePoint = (codePoint << 6) | (byte(i) & 0x3f);
  }
  if (codePoint < minimum || codePoint > 0x10ffff) return 0;
  if (codePoint >= 0xd800 && codePoint <= 0xdfff) return 0;
  return length;
}

// The characters beyond ASCII that are escaped as \uHHHH (see terminal-text.h).
bool isHiddenControl(uint32_t codePoint) {
  return (codePoint >= 0x80 && codePoint <= 0x9f) || codePoint == 0x061c || codePoint == 0x200e ||
         codePoint == 0x200f || codePoint == 0x2028 || codePoint == 0x2029 ||
         (codePoint >= 0x202a && codePoint <= 0x202e) ||
         (codePoint >= 0x2066 && codePoint <= 0x2069);
}

bool isAsciiControl(uint32_t codePoint) {
  return codePoint < 0x20 || codePoint == 0x7f;
}

void addHex(kj::Vector<char>& out, uint32_t value, int digits) {
  static constexpr char HEX[] = "0123456789abcdef";
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) out.add(HEX[(value >> shift) & 0xf]);
}

void addAsciiControl(kj::Vector<char>& out, uint8_t byte) {
  switch (byte) {
    case '\n':
      out.addAll("\\n"_kj);
      return;
    case '\t':
      out.addAll("\\t"_kj);
      return;
    case '\r':
      out.addAll("\\r"_kj);
      return;
    case 0x1b:
      out.addAll("\\e"_kj);
      return;
  }
  out.addAll("\\x"_kj);
  addHex(out, byte, 2);
}

}  // namespace

kj::String escapeForTerminal(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 1);
  auto rest = text.asArray();
  while (rest.size() > 0) {
    uint32_t codePoint;
    size_t length = decodeUtf8(rest, codePoint);
    if (length == 0) {
      out.addAll("\\x"_kj);
      addHex(out, static_cast<uint8_t>(rest[0]), 2);
      length = 1;
    } else if (codePoint == '\\') {
      out.addAll("\\\\"_kj);
    } else if (isAsciiControl(codePoint)) {
      addAsciiControl(out, codePoint);
    } else if (isHiddenControl(codePoint)) {
      out.addAll("\\u"_kj);
      addHex(out, codePoint, 4);
    } else {
      out.addAll(rest.slice(0, length));
    }
    rest = rest.slice(length, rest.size());
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

bool needsEscapes(kj::StringPtr text) {
  auto rest = text.asArray();
  while (rest.size() > 0) {
    uint32_t codePoint;
    size_t length = decodeUtf8(rest, codePoint);
    if (length == 0 || isAsciiControl(codePoint) || isHiddenControl(codePoint)) return true;
    rest = rest.slice(length, rest.size());
  }
  return false;
}

size_t characterCount(kj::StringPtr text) {
  size_t count = 0;
  auto rest = text.asArray();
  while (rest.size() > 0) {
    uint32_t codePoint;
    size_t length = decodeUtf8(rest, codePoint);
    rest = rest.slice(length == 0 ? 1 : length, rest.size());
    ++count;
  }
  return count;
}

}  // namespace client
}  // namespace runner

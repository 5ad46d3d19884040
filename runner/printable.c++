#include "runner/printable.h"

#include <kj/vector.h>
#include <stdint.h>

namespace runner {

namespace {

// The length of the valid UTF-8 sequence at `bytes[i]` and its code point, or 0 when there is
// none there.
size_t utf8Sequence(kj::ArrayPtr<const kj::byte> bytes, size_t i, uint32_t& codePoint) {
  kj::byte lead = bytes[i];
  size_t extra;
  uint32_t minimum;
  if (lead < 0x80) {
    codePoint = lead;
    return 1;
  } else if ((lead & 0xe0) == 0xc0) {
    extra = 1;
    minimum = 0x80;
  } else if ((lead & 0xf0) == 0xe0) {
    extra = 2;
    minimum = 0x800;
  } else if ((lead & 0xf8) == 0xf0) {
    extra = 3;
    minimum = 0x10000;
  } else {
    return 0;
  }
  if (i + extra >= bytes.size()) return 0;
  codePoint = lead & (0x3f >> extra);
  for (size_t k = 1; k <= extra; k++) {
    if ((bytes[i + k] & 0xc0) != 0x80) return 0;
    codePoint = (codePoint << 6) | (bytes[i + k] & 0x3f);
  }
  // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
  if (codePoint < minimum || (codePoint >= 0xd800 && codePoint <= 0xdfff) ||
      codePoint > 0x10ffff) {
    return 0;
  }
  return extra + 1;
}

}  // namespace

bool isValidUtf8(kj::ArrayPtr<const char> text) {
  auto bytes = text.asBytes();
  uint32_t codePoint;
  for (size_t i = 0; i < bytes.size();) {
    size_t length = utf8Sequence(bytes, i, codePoint);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

kj::String printable(kj::ArrayPtr<const char> text, size_t maxBytes) {
  static const char HEX[] = "0123456789abcdef";
  auto bytes = text.asBytes();
  kj::Vector<char> out(kj::min(bytes.size(), maxBytes) + 16);
  auto hexEscape = [&](char prefix, uint32_t value, int digits) {
    out.add('\\');
    out.add(prefix);
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out.add(HEX[(value >> shift) & 0xf]);
  };
  size_t i = 0;
  while (i < bytes.size() && i < maxBytes) {
    uint32_t codePoint;
    size_t length = utf8Sequence(bytes, i, codePoint);
    if (length == 0) {
      hexEscape('x', bytes[i], 2);
      ++i;
      continue;
    }
    if (codePoint == '\\') {
      out.addAll(kj::StringPtr("\\\\"));
    } else if (codePoint == '\n') {
      out.addAll(kj::StringPtr("\\n"));
    } else if (codePoint == '\t') {
      out.addAll(kj::StringPtr("\\t"));
    } else if (codePoint == '\r') {
      out.addAll(kj::StringPtr("\\r"));
    } else if (codePoint < 0x20 || codePoint == 0x7f) {
      hexEscape('x', codePoint, 2);
    } else if (codePoint >= 0x80 && codePoint <= 0x9f) {
      hexEscape('u', codePoint, 4);
    } else {
      out.addAll(text.slice(i, i + length));
    }
    i += length;
  }
  if (i < bytes.size()) out.addAll(kj::StringPtr("..."));
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

}  // namespace runner

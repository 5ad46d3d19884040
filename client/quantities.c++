#include "client/quantities.h"

#include <signal.h>
#include <string.h>

#include <tuple>

namespace runner {
namespace client {

namespace {

// A decimal number "DIGITS[.DIGITS]" read from the front of a string: whole + numerator /
// denominator, exactly.
struct Decimal {
  uint64_t whole = 0;
  uint64_t numerator = 0;
  uint64_t denominator = 1;
};

// Fraction digits beyond this are refused rather than silently dropped.
constexpr size_t MAX_FRACTION_DIGITS = 9;

bool isDigit(char c) {
  return '0' <= c && c <= '9';
}

// Reads a decimal from text[pos...] and advances pos past it. Null when there is no digit before
// the point, no digit after a point, too many fraction digits, or the whole part overflows.
kj::Maybe<Decimal> readDecimal(kj::StringPtr text, size_t& pos) {
  Decimal result;
  size_t start = pos;
  while (pos < text.size() && isDigit(text[pos])) {
    if (__builtin_mul_overflow(result.whole, 10, &result.whole) ||
        __builtin_add_overflow(result.whole, text[pos] - '0', &result.whole)) {
      return nullptr;
    }
    ++pos;
  }
  if (pos == start) return nullptr;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t fractionStart = pos;
    while (pos < text.size() && isDigit(text[pos])) {
      if (pos - fractionStart == MAX_FRACTION_DIGITS) return nullptr;
      result.numerator = result.numerator * 10 + (text[pos] - '0');
      result.denominator *= 10;
      ++pos;
    }
    if (pos == fractionStart) return nullptr;
  }
  return result;
}

// decimal * multiplier, rounded down; null on overflow.
kj::Maybe<uint64_t> scale(const Decimal& decimal, uint64_t multiplier) {
  uint64_t whole;
  if (__builtin_mul_overflow(decimal.whole, multiplier, &whole)) return nullptr;
  // numerator < 10^9 and multiplier <= 2^42 here: the product needs more than 64 bits.
  unsigned __int128 fraction =
      static_cast<unsigned __int128>(decimal.numerator) * multiplier / decimal.denominator;
  uint64_t result;
  if (fraction > UINT64_MAX ||
      __builtin_add_overflow(whole, static_cast<uint64_t>(fraction), &result)) {
    return nullptr;
  }
  return result;
}

kj::Maybe<uint64_t> binaryMultiplier(char unit) {
  switch (unit) {
    case 'k':
    case 'K':
      return uint64_t(1) << 10;
    case 'm':
    case 'M':
      return uint64_t(1) << 20;
    case 'g':
    case 'G':
      return uint64_t(1) << 30;
    case 't':
    case 'T':
      return uint64_t(1) << 40;
    default:
      return nullptr;
  }
}

}  // namespace

kj::Maybe<uint64_t> parseSize(kj::StringPtr text) {
  size_t pos = 0;
  KJ_IF_MAYBE (decimal, readDecimal(text, pos)) {
    if (pos == text.size()) {
      // Plain bytes: a fraction of a byte means a typo, not a limit.
      if (decimal->denominator != 1) return nullptr;
      return decimal->whole;
    }
    uint64_t multiplier = 1;
    KJ_IF_MAYBE (m, binaryMultiplier(text[pos])) {
      multiplier = *m;
      ++pos;
      if (pos < text.size() && (text[pos] == 'i' || text[pos] == 'I')) ++pos;
    } else if (decimal->denominator != 1) {
      return nullptr;
    }
    if (pos < text.size() && (text[pos] == 'b' || text[pos] == 'B')) ++pos;
    if (pos != text.size()) return nullptr;
    return scale(*decimal, multiplier);
  }
  return nullptr;
}

kj::Maybe<uint32_t> parseCores(kj::StringPtr text) {
  size_t pos = 0;
  KJ_IF_MAYBE (decimal, readDecimal(text, pos)) {
    uint64_t millicores;
    if (pos + 1 == text.size() && text[pos] == 'm') {
      if (decimal->denominator != 1) return nullptr;
      millicores = decimal->whole;
    } else if (pos == text.size()) {
      // More than three decimals would be a fraction of a millicore.
      if (decimal->denominator > 1000) return nullptr;
      KJ_IF_MAYBE (scaled, scale(*decimal, 1000)) {
        millicores = *scaled;
      } else {
        return nullptr;
      }
    } else {
      return nullptr;
    }
    if (millicores > UINT32_MAX) return nullptr;
    return static_cast<uint32_t>(millicores);
  }
  return nullptr;
}

kj::Maybe<uint64_t> parseDuration(kj::StringPtr text) {
  size_t pos = 0;
  uint64_t total = 0;
  bool first = true;
  while (pos < text.size() || first) {
    KJ_IF_MAYBE (decimal, readDecimal(text, pos)) {
      uint64_t millisPerUnit;
      if (pos == text.size() && first) {
        millisPerUnit = 1000;
      } else if (text.slice(pos).startsWith("ms")) {
        millisPerUnit = 1;
        pos += 2;
      } else if (pos < text.size() && text[pos] == 's') {
        millisPerUnit = 1000;
        ++pos;
      } else if (pos < text.size() && text[pos] == 'm') {
        millisPerUnit = 60 * 1000;
        ++pos;
      } else if (pos < text.size() && text[pos] == 'h') {
        millisPerUnit = 60 * 60 * 1000;
        ++pos;
      } else if (pos < text.size() && text[pos] == 'd') {
        millisPerUnit = 24 * 60 * 60 * 1000;
        ++pos;
      } else {
        return nullptr;
      }
      KJ_IF_MAYBE (millis, scale(*decimal, millisPerUnit)) {
        if (__builtin_add_overflow(total, *millis, &total)) return nullptr;
      } else {
        return nullptr;
      }
    } else {
      return nullptr;
    }
    first = false;
  }
  return total;
}

kj::Maybe<uint32_t> parseCount(kj::StringPtr text) {
  size_t pos = 0;
  KJ_IF_MAYBE (decimal, readDecimal(text, pos)) {
    if (pos != text.size() || decimal->denominator != 1 || decimal->whole > UINT32_MAX) {
      return nullptr;
    }
    return static_cast<uint32_t>(decimal->whole);
  }
  return nullptr;
}

kj::Maybe<int> parseSignal(kj::StringPtr text) {
  if (text.size() > 0 && text.size() <= 4 && isDigit(text[0])) {
    int number = 0;
    for (char c : text) {
      if (!isDigit(c)) return nullptr;
      number = number * 10 + (c - '0');
    }
    return number;
  }
  kj::StringPtr name = text;
  if (strncasecmp(name.cStr(), "SIG", 3) == 0) name = name.slice(3);
  if (name.size() == 0) return nullptr;
  // RTMIN+N and RTMAX-N, as kill(1) takes them.
  for (auto [prefix, base, sign] :
       {std::make_tuple("RTMIN", SIGRTMIN, 1), std::make_tuple("RTMAX", SIGRTMAX, -1)}) {
    size_t length = strlen(prefix);
    if (strncasecmp(name.cStr(), prefix, length) != 0) continue;
    auto rest = name.slice(length);
    if (rest.size() == 0) return base;
    if (rest[0] != (sign > 0 ? '+' : '-') || rest.size() > 3) return nullptr;
    int offset = 0;
    for (char c : rest.slice(1)) {
      if (!isDigit(c)) return nullptr;
      offset = offset * 10 + (c - '0');
    }
    if (rest.size() == 1 || offset > SIGRTMAX - SIGRTMIN) return nullptr;
    return base + sign * offset;
  }
  for (int number = 1; number < SIGRTMIN; number++) {
    const char* abbreviation = sigabbrev_np(number);
    if (abbreviation != nullptr && strcasecmp(abbreviation, name.cStr()) == 0) return number;
  }
  return nullptr;
}

}  // namespace client
}  // namespace runner

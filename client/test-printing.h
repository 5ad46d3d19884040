#pragma once
// Lets GoogleTest print KJ strings as text (it would otherwise dump their bytes) when an
// assertion on them fails. For tests only.

#include <kj/string.h>

#include <ostream>

namespace kj {

inline void PrintTo(const String& text, std::ostream* out) {
  *out << '"' << text.cStr() << '"';
}
inline void PrintTo(const StringPtr& text, std::ostream* out) {
  *out << '"' << text.cStr() << '"';
}

}  // namespace kj

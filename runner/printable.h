#pragma once
// Text that came from a client, made safe to put in an error reply or a log line.
//
// Error replies and the log quote what a client sent (an unknown id, a bad executor name). Such
// text may be invalid UTF-8 or hold control characters (an escape sequence, a newline that
// forges a log line); printable() shows those as escapes instead, and cuts it short.

#include <kj/string.h>

namespace runner {

// Whether `text` is valid UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
bool isValidUtf8(kj::ArrayPtr<const char> text);

// `text` with a backslash as "\\", C0 controls and DEL as "\n", "\t", "\r" or "\xHH", C1
// controls as "\u0080".."\u009f", and bytes that are not valid UTF-8 as "\xHH"; at most
// `maxBytes` bytes of `text` are shown, then "...".
kj::String printable(kj::ArrayPtr<const char> text, size_t maxBytes = 200);

}  // namespace runner

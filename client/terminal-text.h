#pragma once
// What runctl may write onto a terminal. A job's command, arguments, working directory, error,
// owner and executor come from the server, and so from whichever user started the job: written
// raw, a newline or carriage return would forge a row of `runctl list`, and an escape sequence
// would drive the reader's terminal. Every such field is escaped before runctl shows it, except in
// `--json` output (JSON escapes control characters itself) and in a job's own output (`logs` and
// `run` write it byte for byte, as the job wrote it).
//
// One escaping scheme for all of runctl's human-readable output, the one bash's $'...' quoting
// reads back (so the COMMAND column stays a shell command line, see formatCommandLine()):
//
//   \\        a backslash
//   \n \t \r  newline, tab, carriage return
//   \e        escape (0x1b)
//   \xHH      any other C0 control (0x00-0x1f) or DEL (0x7f), and each byte that is not part of
//             valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF included)
//   \uHHHH    a C1 control (U+0080-U+009F, which some terminals obey like ESC sequences), and the
//             characters that reorder or break a line without being seen: U+061C, U+200E, U+200F,
//             U+2028, U+2029, U+202A-U+202E and U+2066-U+2069
//
// Everything else, printable ASCII and every other character in valid UTF-8, is kept as it is.
// HH and HHHH are always two and four lowercase hex digits, so escaped text maps back to exactly
// one byte string.

#include <kj/string.h>
#include <stddef.h>

namespace runner {
namespace client {

// `text` with every byte or character the scheme above names replaced by its escape.
kj::String escapeForTerminal(kj::StringPtr text);

// Whether escapeForTerminal() would change anything in `text` but backslashes: false for text
// whose every character is shown as itself.
bool needsEscapes(kj::StringPtr text);

// How many characters `text` holds, counting each UTF-8 sequence as one and each byte that is
// not part of one as one: the number of columns escaped text takes on a terminal (for characters
// that are neither double-width nor combining).
size_t characterCount(kj::StringPtr text);

}  // namespace client
}  // namespace runner

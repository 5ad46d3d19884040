#pragma once
// The quantities people type on runctl's command line: byte sizes (memory limits and IO rates),
// CPU cores and durations. Each parser accepts the whole text or nothing; callers turn a null
// result into a usage error that quotes the text and the accepted syntax.

#include <kj/common.h>
#include <kj/string.h>
#include <stdint.h>

namespace runner {
namespace client {

// A byte count: plain bytes ("1048576") or a number with a binary unit K, M, G or T ("512K",
// "64M", "1.5G"), optionally followed by "i" and/or "B" ("64MiB", "64MB" are both 64 * 2^20).
// A fraction needs a unit and is rounded down to whole bytes.
kj::Maybe<uint64_t> parseSize(kj::StringPtr text);

// CPU bandwidth in thousandths of a core: "2" = 2000, "0.5" = 500, "1.25" = 1250, or
// Kubernetes-style millicores, "250m" = 250. At most three decimals.
kj::Maybe<uint32_t> parseCores(kj::StringPtr text);

// A duration in milliseconds: a plain number of seconds ("10", "1.5"), or one or more
// number-unit pairs with units ms, s, m, h, d ("500ms", "2m", "1h30m", "7d").
kj::Maybe<uint64_t> parseDuration(kj::StringPtr text);

// A non-negative decimal integer that fits 32 bits.
kj::Maybe<uint32_t> parseCount(kj::StringPtr text);

// A signal: a number ("10"; whether it is a signal is the server's to say), or a name with or
// without "SIG", in any case ("USR1", "SIGUSR1", "usr1"), including "RTMIN+N" and "RTMAX-N".
kj::Maybe<int> parseSignal(kj::StringPtr text);

// What each parser accepts, for usage errors.
constexpr const char* SIZE_SYNTAX =
    "expected bytes or a number with a unit K, M, G or T (binary), e.g. 512K, 64M, 1.5G";
constexpr const char* CORES_SYNTAX = "expected a number of CPU cores, e.g. 0.5, 2, or 250m";
constexpr const char* DURATION_SYNTAX =
    "expected a duration, e.g. 500ms, 10s, 2m, 1h, 7d, or a number of seconds";
constexpr const char* COUNT_SYNTAX = "expected a whole number";
constexpr const char* SIGNAL_SYNTAX =
    "expected a signal name or number, e.g. TERM, SIGUSR1, KILL, HUP, 10";

}  // namespace client
}  // namespace runner

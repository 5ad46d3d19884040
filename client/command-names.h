#pragma once
// The commands runctl knows and the options each takes, as data: what "did you mean" suggests
// from and what shell completion offers. runctl.c++ registers the same names with its
// MainBuilders; runctl_usability_test checks the two against every command's --help.

#include <kj/array.h>
#include <kj/string.h>

namespace runner {
namespace client {

struct CommandNames {
  kj::StringPtr name;
  // Spelled as typed: "--json", "-f", "--follow". Those that take a value end in "=".
  kj::ArrayPtr<const kj::StringPtr> options;
  // Whether its arguments are job ids, which completion offers.
  bool takesJobIds;
};

// Every command, in the order `runctl --help` lists them, "help" included.
kj::ArrayPtr<const CommandNames> commandNames();

// The options before the command (--server=, --cert=, ..., --help).
kj::ArrayPtr<const kj::StringPtr> globalOptionNames();

// The command runctl's shell completion asks for the caller's job ids: not in --help.
constexpr kj::StringPtr COMPLETE_IDS_COMMAND = "__complete-ids"_kj;

// The name in `names` closest to `typed` (Damerau-Levenshtein, adjacent swaps cost one), when at
// most 2 edits away and fewer than `typed` has characters; the first of equally close ones.
kj::Maybe<kj::StringPtr> closestName(kj::StringPtr typed, kj::ArrayPtr<const kj::StringPtr> names);

// MainBuilder's usage error with a suggestion added to its first line when it is about an unknown
// command or long option that is close to a known one:
// "runctl: lst: unknown command" → "runctl: lst: unknown command; did you mean list?".
// Anything else comes back as it was.
kj::String suggestCorrection(kj::StringPtr usageError);

}  // namespace client
}  // namespace runner

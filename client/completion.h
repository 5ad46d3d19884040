#pragma once
// `runctl completion bash|zsh`: shell scripts that complete runctl's commands, each command's
// options, and the ids and names of the caller's jobs where a command takes ids. They come from
// `runctl [GLOBAL OPTIONS] __complete-ids` (one per line), run with the global options typed so
// far; a failure (no server, no credentials) completes nothing.

#include <kj/string.h>

namespace runner {
namespace client {

// For bash: defines _runctl and registers it with `complete -F _runctl runctl`.
kj::String bashCompletion();

// For zsh: defines _runctl and registers it with compdef (after compinit), or works as an
// autoloaded completion function named _runctl.
kj::String zshCompletion();

}  // namespace client
}  // namespace runner

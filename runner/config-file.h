#pragma once
// runnerd's configuration file (--config): one setting a line, each a long flag of runnerd's
// without its "--", so that the file and the command line are one set of names and one set of
// checks. The file only splits lines into keys and values; what a key means and which values it
// takes is the flag's business.
//
//   # comment
//   listen = 0.0.0.0:7443
//   admin alice          # a repeatable flag repeats
//   admin bob
//
// A line is blank, a comment, or KEY [=] VALUE: the key is lower-case letters, digits and '-';
// it is separated from its value by '=' or by blanks. A '#' at the start of a line or after a
// blank starts a comment. The value is the rest of the line with the blanks around it removed,
// taken literally (no quotes, no escapes).

#include <kj/array.h>
#include <kj/string.h>

namespace runner {

struct ConfigEntry {
  kj::String key;
  kj::String value;
  // 1-based, for messages that say "FILE:LINE: ...".
  unsigned line;
};

// The settings of `text`, read from `path` (named in errors), in file order. Throws one line,
// "PATH:LINE: why", on the first line that is not blank, a comment or a setting.
kj::Array<ConfigEntry> parseConfigFile(kj::StringPtr path, kj::StringPtr text);

// Reads `path` (a configuration file is small: at most 1 MiB) and parses it. Throws one line.
kj::Array<ConfigEntry> readConfigFile(kj::StringPtr path);

}  // namespace runner

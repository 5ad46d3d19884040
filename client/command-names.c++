#include "client/command-names.h"

#include <kj/vector.h>

namespace runner {
namespace client {

namespace {

// Keep in step with runctl.c++ and spec-options.c++.
constexpr kj::StringPtr SPEC_OPTIONS[] = {
    "--cpu="_kj,          "--memory="_kj,     "--io-read="_kj, "--io-write="_kj,
    "--pids="_kj,         "--max-output="_kj, "--isolate"_kj,  "-e"_kj,
    "--env="_kj,          "--env-file="_kj,   "-w"_kj,         "--workdir="_kj,
    "--executor="_kj,     "--name="_kj,       "--label="_kj,   "--timeout="_kj,
    "--idle-timeout="_kj, "--help"_kj,
};
constexpr kj::StringPtr START_OPTIONS[] = {
    "--cpu="_kj,          "--memory="_kj,     "--io-read="_kj, "--io-write="_kj,
    "--pids="_kj,         "--max-output="_kj, "--isolate"_kj,  "-e"_kj,
    "--env="_kj,          "--env-file="_kj,   "-w"_kj,         "--workdir="_kj,
    "--executor="_kj,     "--name="_kj,       "--label="_kj,   "--timeout="_kj,
    "--idle-timeout="_kj, "--json"_kj,        "--help"_kj,
};
constexpr kj::StringPtr LOGS_OPTIONS[] = {"-f"_kj,           "--follow"_kj, "--tail="_kj,
                                          "--since="_kj,     "--until="_kj, "-t"_kj,
                                          "--timestamps"_kj, "--help"_kj};
constexpr kj::StringPtr JSON_OPTIONS[] = {"--json"_kj, "--help"_kj};
constexpr kj::StringPtr STOP_OPTIONS[] = {"--grace="_kj, "--help"_kj};
constexpr kj::StringPtr LIST_OPTIONS[] = {
    "-a"_kj,       "--all"_kj, "--state="_kj, "--label="_kj, "--name="_kj,
    "--limit="_kj, "-q"_kj,    "--quiet"_kj,  "--json"_kj,   "--help"_kj,
};
constexpr kj::StringPtr RM_OPTIONS[] = {"-f"_kj, "--force"_kj, "--grace="_kj, "--help"_kj};
constexpr kj::StringPtr PRUNE_OPTIONS[] = {"--older-than="_kj, "--all-users"_kj, "--help"_kj};
constexpr kj::StringPtr KILL_OPTIONS[] = {"-s"_kj, "--signal="_kj, "--help"_kj};
constexpr kj::StringPtr HELP_OPTIONS[] = {"--help"_kj};

constexpr CommandNames COMMANDS[] = {
    {"completion"_kj, HELP_OPTIONS, false},
    {"kill"_kj, KILL_OPTIONS, true},
    {"list"_kj, LIST_OPTIONS, false},
    {"logs"_kj, LOGS_OPTIONS, true},
    {"prune"_kj, PRUNE_OPTIONS, false},
    {"rm"_kj, RM_OPTIONS, true},
    {"run"_kj, SPEC_OPTIONS, false},
    {"start"_kj, START_OPTIONS, false},
    {"status"_kj, JSON_OPTIONS, true},
    {"stop"_kj, STOP_OPTIONS, true},
    {"wait"_kj, JSON_OPTIONS, true},
    {"whoami"_kj, JSON_OPTIONS, false},
    {"help"_kj, nullptr, false},
};

constexpr kj::StringPtr GLOBAL_OPTIONS[] = {
    "--server="_kj, "--server-name="_kj, "--cert="_kj,   "--key="_kj,
    "--ca="_kj,     "--verbose"_kj,      "--version"_kj, "--help"_kj,
};

size_t editDistance(kj::StringPtr a, kj::StringPtr b) {
  // Optimal string alignment: insertions, deletions, substitutions and swaps of neighbours.
  size_t columns = b.size() + 1;
  auto d = kj::heapArray<size_t>((a.size() + 1) * columns);
  auto at = [&](size_t i, size_t j) -> size_t& { return d[i * columns + j]; };
  for (size_t i = 0; i <= a.size(); i++) at(i, 0) = i;
  for (size_t j = 0; j <= b.size(); j++) at(0, j) = j;
  for (size_t i = 1; i <= a.size(); i++) {
    for (size_t j = 1; j <= b.size(); j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      at(i, j) = kj::min(kj::min(at(i - 1, j) + 1, at(i, j - 1) + 1), at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        at(i, j) = kj::min(at(i, j), at(i - 2, j - 2) + 1);
      }
    }
  }
  return at(a.size(), b.size());
}

kj::String withoutValueMark(kj::StringPtr option) {
  return option.endsWith("=") ? kj::heapString(option.slice(0, option.size() - 1))
                              : kj::str(option);
}

}  // namespace

kj::ArrayPtr<const CommandNames> commandNames() {
  return COMMANDS;
}

kj::ArrayPtr<const kj::StringPtr> globalOptionNames() {
  return GLOBAL_OPTIONS;
}

kj::Maybe<kj::StringPtr> closestName(kj::StringPtr typed, kj::ArrayPtr<const kj::StringPtr> names) {
  constexpr size_t MAX_EDITS = 2;
  kj::Maybe<kj::StringPtr> best;
  size_t bestDistance = MAX_EDITS + 1;
  for (auto name : names) {
    size_t distance = editDistance(typed, name);
    if (distance < bestDistance && distance < typed.size()) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

kj::String suggestCorrection(kj::StringPtr usageError) {
  // MainBuilder's first line is "PROGRAM: WHAT: PROBLEM", PROGRAM being "runctl" or
  // "runctl COMMAND".
  kj::StringPtr firstLine = usageError;
  kj::String firstLineCopy;
  KJ_IF_MAYBE (newline, usageError.findFirst('\n')) {
    firstLineCopy = kj::heapString(usageError.slice(0, *newline));
    firstLine = firstLineCopy;
  }
  auto unchanged = [&]() { return kj::str(usageError); };
  KJ_IF_MAYBE (colon, firstLine.findFirst(':')) {
    auto program = kj::heapString(firstLine.slice(0, *colon));
    kj::StringPtr rest = firstLine.slice(*colon + 1);
    if (!rest.startsWith(" ")) return unchanged();
    rest = rest.slice(1);

    kj::Vector<kj::String> candidates;
    kj::String typed;
    constexpr kj::StringPtr UNKNOWN_COMMAND = ": unknown command"_kj;
    constexpr kj::StringPtr UNKNOWN_OPTION = ": unrecognized option"_kj;
    if (rest.endsWith(UNKNOWN_COMMAND)) {
      for (auto& command : COMMANDS) candidates.add(kj::str(command.name));
      typed = kj::heapString(rest.slice(0, rest.size() - UNKNOWN_COMMAND.size()));
    } else if (rest.endsWith(UNKNOWN_OPTION) && rest.startsWith("--")) {
      kj::ArrayPtr<const kj::StringPtr> options = GLOBAL_OPTIONS;
      KJ_IF_MAYBE (space, program.findFirst(' ')) {
        kj::StringPtr commandName = program.slice(*space + 1);
        options = nullptr;
        for (auto& command : COMMANDS) {
          if (command.name == commandName) options = command.options;
        }
      }
      for (auto option : options) {
        if (option.startsWith("--")) candidates.add(withoutValueMark(option));
      }
      typed = kj::heapString(rest.slice(0, rest.size() - UNKNOWN_OPTION.size()));
    } else {
      return unchanged();
    }
    auto names = KJ_MAP(candidate, candidates)->kj::StringPtr {
      return candidate;
    };
    KJ_IF_MAYBE (suggestion, closestName(typed, names)) {
      return kj::str(firstLine, "; did you mean ", *suggestion, "?",
                     usageError.slice(firstLine.size()));
    }
  }
  return unchanged();
}

}  // namespace client
}  // namespace runner

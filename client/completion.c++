#include "client/completion.h"

#include <kj/vector.h>

#include <utility>

#include "client/command-names.h"

namespace runner {
namespace client {

namespace {

kj::String words(kj::ArrayPtr<const kj::StringPtr> names) {
  return kj::strArray(names, " ");
}

kj::String commandWords() {
  kj::Vector<kj::StringPtr> names;
  for (auto& command : commandNames()) names.add(command.name);
  return words(names);
}

kj::String idCommandWords() {
  kj::Vector<kj::StringPtr> names;
  for (auto& command : commandNames()) {
    if (command.takesJobIds) names.add(command.name);
  }
  return kj::strArray(names, "|");
}

// The global options that take a value: the completion passes them to __complete-ids.
kj::String globalValuePattern() {
  kj::Vector<kj::String> names;
  for (auto option : globalOptionNames()) {
    if (option.endsWith("=")) names.add(kj::heapString(option.slice(0, option.size() - 1)));
  }
  return kj::strArray(names, "|");
}

// One `NAME) options="...";;` line per command, for a shell `case`.
kj::String optionCaseLines() {
  kj::Vector<kj::String> lines;
  for (auto& command : commandNames()) {
    lines.add(kj::str("    ", command.name, ") options=\"", words(command.options), "\";;\n"));
  }
  return kj::strArray(lines, "");
}

// `script` with each "@NAME@" replaced by its value.
kj::String fillIn(kj::StringPtr script,
                  std::initializer_list<std::pair<kj::StringPtr, kj::StringPtr>> values) {
  kj::Vector<char> out(script.size() + 1024);
  for (size_t i = 0; i < script.size();) {
    bool replaced = false;
    if (script[i] == '@') {
      for (auto& value : values) {
        auto key = kj::str("@", value.first, "@");
        if (script.slice(i).startsWith(key)) {
          out.addAll(value.second);
          i += key.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.add(script[i++]);
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// The ids, from `runctl [GLOBAL OPTIONS] __complete-ids`; bash splits what it types at '=' and
// ':' (--server=host:port is --server = host : port), so the global options are glued back.
constexpr kj::StringPtr BASH = R"SH(# bash completion for runctl: source <(runctl completion bash)
_runctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local i word command= options= value globals=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    case $word in
      @GLOBAL_VALUES@)
        value=
        [[ ${COMP_WORDS[i+1]} == = ]] && ((i++))
        if ((i + 1 < COMP_CWORD)); then
          ((i++)); value=${COMP_WORDS[i]}
          while ((i + 2 < COMP_CWORD)) && [[ ${COMP_WORDS[i+1]} == : ]]; do
            value+=:${COMP_WORDS[i+2]}; ((i += 2))
          done
          globals+=("$word=$value")
        fi;;
      -*) ;;
      *) command=$word; break;;
    esac
  done
  [[ $cur == = ]] && cur=
  [[ $prev == = ]] && prev=${COMP_WORDS[COMP_CWORD-2]}
  if [[ -z $command ]]; then
    case $prev in
      --cert|--key|--ca) COMPREPLY=($(compgen -f -- "$cur")); return;;
      @GLOBAL_VALUES@) COMPREPLY=(); return;;
    esac
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "@GLOBAL_OPTIONS@" -- "$cur"))
      [[ ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    else
      COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
    fi
    return
  fi
  case $command in
@OPTION_CASES@  esac
  if [[ $prev == --env-file ]]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
    [[ ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    return
  fi
  case $command in
    @ID_COMMANDS@)
      COMPREPLY=($(compgen -W "$(runctl "${globals[@]}" @COMPLETE_IDS@ 2>/dev/null)" -- "$cur"));;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur"));;
    help) COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"));;
    start|run) COMPREPLY=($(compgen -c -- "$cur"));;
  esac
}
complete -F _runctl runctl
)SH"_kj;

constexpr kj::StringPtr ZSH = R"SH(#compdef runctl
# zsh completion for runctl: source <(runctl completion zsh) after compinit, or save it as _runctl
# in a directory of $fpath.
_runctl() {
  local i word command= options=
  local -a globals
  for ((i = 2; i < CURRENT; i++)); do
    word=${words[i]}
    case $word in
      @GLOBAL_VALUES@) globals+=("$word=${words[i+1]}"); ((i++));;
      --*=*) globals+=("$word");;
      -*) ;;
      *) command=$word; break;;
    esac
  done
  if [[ -z $command ]]; then
    case ${words[CURRENT-1]} in
      --cert|--key|--ca) _files; return;;
      @GLOBAL_VALUES@) return;;
    esac
    if [[ $PREFIX == -* ]]; then
      compadd -S '' -- @GLOBAL_OPTIONS@
    else
      compadd -- @COMMANDS@
    fi
    return
  fi
  case $command in
@OPTION_CASES@  esac
  if [[ ${words[CURRENT-1]} == --env-file ]]; then _files; return; fi
  if [[ $PREFIX == -* ]]; then
    compadd -S '' -- ${=options}
    return
  fi
  case $command in
    @ID_COMMANDS@) compadd -- ${(f)"$(runctl "${globals[@]}" @COMPLETE_IDS@ 2>/dev/null)"};;
    completion) compadd -- bash zsh;;
    help) compadd -- @COMMANDS@;;
    start|run) _command_names;;
  esac
}
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
  _runctl "$@"
else
  compdef _runctl runctl
fi
)SH"_kj;

kj::String fillInNames(kj::StringPtr script) {
  auto globalValues = globalValuePattern();
  auto globalOptions = words(globalOptionNames());
  auto commands = commandWords();
  auto optionCases = optionCaseLines();
  auto idCommands = idCommandWords();
  return fillIn(script, {{"GLOBAL_VALUES", globalValues},
                         {"GLOBAL_OPTIONS", globalOptions},
                         {"COMMANDS", commands},
                         {"OPTION_CASES", optionCases},
                         {"ID_COMMANDS", idCommands},
                         {"COMPLETE_IDS", COMPLETE_IDS_COMMAND}});
}

}  // namespace

kj::String bashCompletion() {
  return fillInNames(BASH);
}

kj::String zshCompletion() {
  return fillInNames(ZSH);
}

}  // namespace client
}  // namespace runner

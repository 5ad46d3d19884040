// runctl: the command-line client of runnerd. The command line is the contract of DESIGN.md
// ("Command line"); `runctl --help` and `runctl COMMAND --help` describe all of it.

#include <capnp/schema.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/main.h>
#include <kj/vector.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "client/command-names.h"
#include "client/commands.h"
#include "client/completion.h"
#include "client/connection.h"
#include "client/error-message.h"
#include "client/exit-status.h"
#include "client/log-lines.h"
#include "client/quantities.h"
#include "client/spec-options.h"
#include "tls/tls-config.h"

namespace runner {
namespace client {
namespace {

constexpr const char* VERSION = "runctl (runner) 0.1.0";

constexpr const char* OVERVIEW =
    "Runs commands as jobs on a runnerd server and shows their output and state. runctl "
    "authenticates with a client certificate (mutual TLS 1.3); the certificate's common name is "
    "the user the server knows you as.";

constexpr const char* GLOBAL_DETAILS =
    "Environment: RUNCTL_SERVER, RUNCTL_SERVER_NAME, RUNCTL_CERT, RUNCTL_KEY and RUNCTL_CA stand "
    "in for the options of the same names when those are not given.\n"
    "\n"
    "Exit status: `run` and `wait` exit with the job's exit code, 128+N when signal N ended the "
    "job, 127 when its command could not be started and 125 when runctl or the server failed. "
    "The other commands exit 0 on success, 1 on failure and 2 on a usage error.\n"
    "\n"
    "Options of a command follow its name: runctl [<option>...] <command> [<command option>...] "
    "<args>.\n"
    "\n"
    "Wherever a command takes an <id>, the job's name (one of your jobs) or a prefix of at least "
    "4 characters of its id that no other job's id starts with works too.";

constexpr const char* START_DETAILS =
    "Options end at the command: `runctl start sleep 60` and `runctl start -- ls -l` both work. "
    "A command that cannot be started (no such program) still makes a job, in state failed: its "
    "id is printed, the reason goes to stderr and the exit status is 1.";

constexpr const char* RUN_DETAILS =
    "Starts the job and streams its output (stdout and stderr, as the job wrote them) to stdout "
    "byte for byte, in the same round trip, until the job ends; then exits with the job's exit "
    "code (128+N when signal N ended it, 127 when it could not start, 125 when runctl or the "
    "server failed).\n"
    "\n"
    "Interrupting runctl (Ctrl-C or SIGTERM) stops the job, like `runctl stop` with the server's "
    "grace period, and keeps streaming until it has ended. A second interrupt exits at once with "
    "128+N without waiting any longer.\n"
    "\n"
    "Options end at the command: `runctl run ls -l` runs `ls -l`; `--` may also separate them.";

constexpr const char* SEVERAL_IDS_DETAILS =
    "Several ids are handled in the order given; one that fails (not found, not allowed) gets one "
    "error line on stderr, the others are still handled, and the exit status is 1.";

constexpr const char* WAIT_DETAILS =
    "With several ids, waits for all of them and exits with the first non-zero exit code in the "
    "order given (125 for an id that could not be waited for, after one error line), or 0 when "
    "every job exited 0.";

constexpr const char* COMPLETION_DETAILS =
    "bash: source <(runctl completion bash), e.g. in ~/.bashrc. zsh: source <(runctl completion "
    "zsh) after compinit, or save it as _runctl in a directory of $fpath.";

// A ProcessContext with runctl's exit codes: MainBuilder's usage errors exit 2 with one line,
// --help and --version exit 0. Output goes straight to the file descriptors, so _exit() loses
// nothing.
class RunctlContext final : public kj::ProcessContext {
 public:
  explicit RunctlContext(kj::StringPtr programName) : programName(programName) {}

  kj::StringPtr getProgramName() override { return programName; }

  KJ_NORETURN(void exit() override) { _exit(exitCode); }

  void warning(kj::StringPtr message) override { writeLine(STDERR_FILENO, message); }

  void error(kj::StringPtr message) override {
    writeLine(STDERR_FILENO, message);
    exitCode = EXIT_FAILED;
  }

  // MainBuilder calls this for usage errors only. Its second line ("Try '... --help'...") goes:
  // errors are one line. A mistyped command or option gets a suggestion ("did you mean list?").
  KJ_NORETURN(void exitError(kj::StringPtr original) override) {
    auto corrected = suggestCorrection(original);
    kj::StringPtr message = corrected;
    KJ_IF_MAYBE (newline, message.findFirst('\n')) {
      writeLine(STDERR_FILENO, kj::heapString(message.slice(0, *newline)));
    } else {
      writeLine(STDERR_FILENO, message);
    }
    _exit(usageExitCode);
  }

  // `run` and `wait` exit with the job's code, so their usage errors are runctl failures (125,
  // as docker's are) rather than a 2 that a job could have returned.
  void setUsageExitCode(int code) { usageExitCode = code; }
  int getUsageExitCode() const { return usageExitCode; }

  KJ_NORETURN(void exitInfo(kj::StringPtr message) override) {
    writeLine(STDOUT_FILENO, message);
    _exit(EXIT_OK);
  }

  void increaseLoggingVerbosity() override {
    kj::_::Debug::setLogLevel(kj::_::Debug::Severity::INFO);
  }

  KJ_NORETURN(void exitWith(int code)) { _exit(code); }

 private:
  kj::StringPtr programName;
  int exitCode = EXIT_OK;
  int usageExitCode = EXIT_USAGE;

  static void writeLine(int fd, kj::StringPtr message) {
    auto line = message.endsWith("\n") ? kj::str(message) : kj::str(message, "\n");
    kj::FdOutputStream(fd).write(line.begin(), line.size());
  }
};

using Validity = kj::MainBuilder::Validity;

class Runctl {
 public:
  explicit Runctl(RunctlContext& context) : context(context) {}

  // `runctl __complete-ids`, for shell completion, takes the global options but is not among
  // the commands --help lists.
  kj::MainFunc getMain() {
    return [this](kj::StringPtr programName, kj::ArrayPtr<const kj::StringPtr> params) {
      if (commandOf(params) == COMPLETE_IDS_COMMAND) {
        kj::MainBuilder builder(context, VERSION, OVERVIEW);
        addGlobalOptions(builder)
            .addSubCommand(COMPLETE_IDS_COMMAND, KJ_BIND_METHOD(*this, getCompleteIdsMain), "")
            .build()(programName, params);
      } else {
        getCommandsMain()(programName, params);
      }
    };
  }

  kj::MainBuilder& addGlobalOptions(kj::MainBuilder& builder) {
    return builder
        .addOptionWithArg({"server"}, setFlag(flags.server), "<host:port>",
                          "The runnerd to talk to. Default: $RUNCTL_SERVER, else 127.0.0.1:7443.")
        .addOptionWithArg({"server-name"}, setFlag(flags.serverName), "<name>",
                          "The name the server's certificate must carry. Default: "
                          "$RUNCTL_SERVER_NAME, else the host part of --server.")
        .addOptionWithArg({"cert"}, setFlag(flags.cert), "<file>",
                          "This client's certificate (PEM); its common name is your user name "
                          "on the server. Default: $RUNCTL_CERT. Required.")
        .addOptionWithArg({"key"}, setFlag(flags.key), "<file>",
                          "The private key of --cert (PEM). Default: $RUNCTL_KEY. Required.")
        .addOptionWithArg({"ca"}, setFlag(flags.ca), "<file>",
                          "The CA certificate (PEM) that must have signed the server's "
                          "certificate. Default: $RUNCTL_CA. Required.");
  }

  // The word after the global options (and their values), or "" when there is none.
  static kj::StringPtr commandOf(kj::ArrayPtr<const kj::StringPtr> params) {
    constexpr kj::StringPtr OPTIONS_WITH_VALUE[] = {"--server"_kj, "--server-name"_kj, "--cert"_kj,
                                                    "--key"_kj, "--ca"_kj};
    for (size_t i = 0; i < params.size(); i++) {
      if (!params[i].startsWith("-")) return params[i];
      for (auto option : OPTIONS_WITH_VALUE) {
        if (params[i] == option) ++i;
      }
    }
    return "";
  }

  kj::MainFunc getCommandsMain() {
    kj::MainBuilder builder(context, VERSION, OVERVIEW, GLOBAL_DETAILS);
    return addGlobalOptions(builder)
        .addSubCommand("start", KJ_BIND_METHOD(*this, getStartMain),
                       "start a job in the background; print its id")
        .addSubCommand("run", KJ_BIND_METHOD(*this, getRunMain),
                       "start a job, stream its output, exit with its exit code")
        .addSubCommand("logs", KJ_BIND_METHOD(*this, getLogsMain),
                       "print a job's output from its first byte (-f: until the job ends)")
        .addSubCommand("status", KJ_BIND_METHOD(*this, getStatusMain),
                       "show a job's state, command, times, limits and resource usage")
        .addSubCommand("wait", KJ_BIND_METHOD(*this, getWaitMain),
                       "wait for a job to end; exit with its exit code")
        .addSubCommand("stop", KJ_BIND_METHOD(*this, getStopMain),
                       "stop a job: SIGTERM, then SIGKILL after a grace period")
        .addSubCommand("kill", KJ_BIND_METHOD(*this, getKillMain),
                       "send a signal (default KILL) to every process of running jobs")
        .addSubCommand("list", KJ_BIND_METHOD(*this, getListMain),
                       "list your jobs (--all: every user's jobs)")
        .addSubCommand("rm", KJ_BIND_METHOD(*this, getRmMain),
                       "remove ended jobs: record and output (-f: stop running ones first)")
        .addSubCommand("prune", KJ_BIND_METHOD(*this, getPruneMain),
                       "remove your ended jobs (--older-than: only old ones; --all-users)")
        .addSubCommand("whoami", KJ_BIND_METHOD(*this, getWhoamiMain),
                       "show the user the server knows you as, and whether you are an admin")
        .addSubCommand("completion", KJ_BIND_METHOD(*this, getCompletionMain),
                       "print a bash or zsh script that completes runctl's commands and ids")
        .build();
  }

 private:
  RunctlContext& context;
  ServerFlags flags;
  SpecOptions spec;
  bool json = false;
  bool follow = false;
  bool allUsers = false;
  bool force = false;
  uint32_t graceMillis = 0;
  uint64_t olderThanMillis = 0;
  int signalNumber = SIGKILL;
  kj::StringPtr jobId;
  kj::Vector<kj::StringPtr> jobIds;
  ListOptions list;
  LogsOptions logs;
  kj::String completionScript;

  static kj::Function<Validity(kj::StringPtr)> setFlag(kj::Maybe<kj::String>& flag) {
    return [&flag](kj::StringPtr value) -> Validity {
      flag = kj::str(value);
      return true;
    };
  }

  static int64_t wallClockMillis() {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
  }

  Validity setJobId(kj::StringPtr id) {
    if (id.size() == 0) return "a job id must not be empty";
    jobId = id;
    return true;
  }

  Validity addJobId(kj::StringPtr id) {
    if (id.size() == 0) return "a job id must not be empty";
    jobIds.add(id);
    return true;
  }

  Validity setOlderThan(kj::StringPtr text) {
    KJ_IF_MAYBE (millis, parseDuration(text)) {
      olderThanMillis = *millis;
      return true;
    }
    return DURATION_SYNTAX;
  }

  Validity setJson() {
    json = true;
    return true;
  }

  Validity setGrace(kj::StringPtr text) {
    KJ_IF_MAYBE (millis, parseDuration(text)) {
      if (*millis > UINT32_MAX) return "a grace period must be shorter than 49 days";
      // The API reads 0 as "the server's default", so the shortest grace it can ask for is 1 ms.
      graceMillis = *millis == 0 ? 1 : static_cast<uint32_t>(*millis);
      return true;
    }
    return DURATION_SYNTAX;
  }

  kj::MainBuilder& addJsonOption(kj::MainBuilder& builder, kj::StringPtr help) {
    return builder.addOption({"json"}, KJ_BIND_METHOD(*this, setJson), help);
  }

  kj::MainFunc getStartMain() {
    kj::MainBuilder builder(context, VERSION, "Starts a job in the background and prints its id.",
                            START_DETAILS);
    spec.addOptions(builder);
    addJsonOption(builder, "Print the new job's metadata as one JSON object instead of its id.");
    return SpecOptions::endOptionsAtCommand(
        spec.addCommandArgs(builder)
            .callAfterParsing([this]() -> Validity {
              KJ_IF_MAYBE (error, spec.loadEnvFiles(processEnv).releaseError()) {
                return kj::mv(*error);
              }
              auto message = spec.build();
              auto specReader = message->getRoot<api::JobSpec>().asReader();
              bool asJson = json;
              runCommand(EXIT_FAILED, false,
                         [&](CommandIo& cmd) { return startJob(cmd, specReader, asJson); });
            })
            .build());
  }

  kj::MainFunc getRunMain() {
    context.setUsageExitCode(EXIT_RUNCTL_FAILED);
    kj::MainBuilder builder(context, VERSION,
                            "Starts a job, streams its output to stdout and exits with its exit "
                            "code.",
                            RUN_DETAILS);
    spec.addOptions(builder);
    return SpecOptions::endOptionsAtCommand(
        spec.addCommandArgs(builder)
            .callAfterParsing([this]() -> Validity {
              KJ_IF_MAYBE (error, spec.loadEnvFiles(processEnv).releaseError()) {
                return kj::mv(*error);
              }
              auto message = spec.build();
              auto specReader = message->getRoot<api::JobSpec>().asReader();
              runCommand(EXIT_RUNCTL_FAILED, true,
                         [&](CommandIo& cmd) { return runJob(cmd, specReader); });
            })
            .build());
  }

  kj::MainFunc getLogsMain() {
    return kj::MainBuilder(context, VERSION,
                           "Writes a job's output (stdout and stderr, as the job wrote them) to "
                           "stdout, byte for byte, from its first byte. Without -f, exits once "
                           "everything written so far is delivered.",
                           "--tail, --since, --until and -t select or mark whole lines (a line "
                           "ends with a newline; the last may not): a line's time is when its "
                           "first byte arrived, as runnerd noted it, to within 100 ms (coarser "
                           "for a job whose output went on for more than about 7 minutes).")
        .addOption(
            {'f', "follow"},
            [this]() -> Validity {
              follow = true;
              return true;
            },
            "Keep writing new output until the job has ended.")
        .addOptionWithArg(
            {"tail"},
            [this](kj::StringPtr text) -> Validity {
              KJ_IF_MAYBE (count, parseCount(text)) {
                logs.tail = *count;
                return true;
              }
              return "--tail takes a number of lines";
            },
            "<lines>",
            "Only the last <lines> lines (of those --since selects); with -f, then "
            "what follows.")
        .addOptionWithArg(
            {"since"},
            [this](kj::StringPtr text) -> Validity {
              KJ_IF_MAYBE (time, parseLogTime(text, wallClockMillis())) {
                logs.sinceMillis = *time;
                return true;
              }
              return "--since takes an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago "
                     "(10s, 5m, 1h30m)";
            },
            "<time>",
            "Only lines that arrived at or after <time>: RFC 3339 "
            "(2026-01-02T15:04:05Z, 2026-01-02T16:04:05.5+01:00) or a duration ago (10s, 5m, "
            "1h30m).")
        .addOptionWithArg(
            {"until"},
            [this](kj::StringPtr text) -> Validity {
              KJ_IF_MAYBE (time, parseLogTime(text, wallClockMillis())) {
                logs.untilMillis = *time;
                return true;
              }
              return "--until takes an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago "
                     "(10s, 5m, 1h30m)";
            },
            "<time>",
            "Only lines that arrived at or before <time> (as --since); with -f, stops "
            "at the first line that arrived later, or when the job ends.")
        .addOption(
            {'t', "timestamps"},
            [this]() -> Validity {
              logs.timestamps = true;
              return true;
            },
            "Begin each line with the time its first byte arrived (RFC 3339 in UTC with "
            "milliseconds) and a space.")
        .expectArg("<id>", KJ_BIND_METHOD(*this, setJobId))
        .callAfterParsing([this]() -> Validity {
          logs.follow = follow;
          runCommand(EXIT_FAILED, false,
                     [this](CommandIo& cmd) { return showLogs(cmd, jobId, logs); });
        })
        .build();
  }

  kj::MainFunc getStatusMain() {
    kj::MainBuilder builder(context, VERSION,
                            "Shows a job's id, owner, state, exit code or signal, what ended it "
                            "(a stop, a timeout, an idle timeout, the output limit), error, "
                            "command, times, limits, timeouts, isolation, executor, cgroup, CPU "
                            "time, peak memory (and, while it runs, its memory now: usage so far), "
                            "output size and whether the OOM killer struck.",
                            SEVERAL_IDS_DETAILS);
    return addJsonOption(builder, "Print each job's metadata as one JSON object, one line per job.")
        .expectOneOrMoreArgs("<id>", KJ_BIND_METHOD(*this, addJobId))
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false,
                     [this](CommandIo& cmd) { return showStatus(cmd, jobIds, json); });
        })
        .build();
  }

  kj::MainFunc getWaitMain() {
    context.setUsageExitCode(EXIT_RUNCTL_FAILED);
    kj::MainBuilder builder(context, VERSION,
                            "Waits for a job to end and exits with its exit code, like `run` "
                            "(128+N when signal N ended it, 127 when it could not start, 125 when "
                            "runctl or the server failed).",
                            WAIT_DETAILS);
    return addJsonOption(builder,
                         "Print each ended job's metadata as one JSON object, one line per job.")
        .expectOneOrMoreArgs("<id>", KJ_BIND_METHOD(*this, addJobId))
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_RUNCTL_FAILED, false,
                     [this](CommandIo& cmd) { return waitJobs(cmd, jobIds, json); });
        })
        .build();
  }

  kj::MainFunc getStopMain() {
    return kj::MainBuilder(context, VERSION,
                           "Stops a job: SIGTERM to all of its processes, then SIGKILL once the "
                           "grace period is over. Prints the job's id and how it ended. Only the "
                           "job's owner or an admin may stop it.",
                           SEVERAL_IDS_DETAILS)
        .addOptionWithArg({"grace"}, KJ_BIND_METHOD(*this, setGrace), "<duration>",
                          "How long to wait between SIGTERM and SIGKILL: 500ms, 10s, 2m, 1h, or "
                          "a number of seconds; 0 sends SIGKILL 1 ms after SIGTERM. Default: "
                          "the server's.")
        .expectOneOrMoreArgs("<id>", KJ_BIND_METHOD(*this, addJobId))
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false,
                     [this](CommandIo& cmd) { return stopJobs(cmd, jobIds, graceMillis); });
        })
        .build();
  }

  kj::MainFunc getKillMain() {
    return kj::MainBuilder(context, VERSION,
                           "Sends a signal to every process of each running job (its cgroup, or "
                           "its process group) and prints each job's id. Unlike `stop`, no grace "
                           "period and no follow-up SIGKILL: the job may catch or ignore the "
                           "signal, and one it dies of ends it `killed`. A job that cannot be "
                           "signalled (ended, unknown, not yours) gets one error line, the others "
                           "are still signalled, and the exit status is 1. Only a job's owner or "
                           "an admin may signal it.")
        .addOptionWithArg({'s', "signal"}, KJ_BIND_METHOD(*this, setSignal), "<signal>",
                          "The signal: a name with or without SIG, in any case (TERM, SIGUSR1, "
                          "hup, RTMIN+1), or a number. Default: KILL, as docker kill and pueue "
                          "kill send.")
        .expectOneOrMoreArgs("<id>", KJ_BIND_METHOD(*this, addJobId))
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false,
                     [this](CommandIo& cmd) { return signalJobs(cmd, jobIds, signalNumber); });
        })
        .build();
  }

  Validity setSignal(kj::StringPtr text) {
    KJ_IF_MAYBE (number, parseSignal(text)) {
      signalNumber = *number;
      return true;
    }
    return SIGNAL_SYNTAX;
  }

  kj::MainFunc getListMain() {
    kj::MainBuilder builder(context, VERSION,
                            "Lists your jobs, oldest first, as a table: ID, OWNER, STATE, EXIT "
                            "(code or signal), CREATED, NAME and LABELS (when a listed job has "
                            "them; labels as k=v,k2=v2, cut at 40 characters), COMMAND.");
    builder.addOption(
        {'a', "all"},
        [this]() -> Validity {
          list.allUsers = true;
          return true;
        },
        "List every user's jobs, not only yours.");
    builder.addOptionWithArg({"state"}, KJ_BIND_METHOD(*this, addListState), "<state>",
                             "Only jobs in this state: running, exited, killed, stopped, failed "
                             "or lost; repeatable (any of them).");
    builder.addOptionWithArg({"label"}, KJ_BIND_METHOD(*this, addListLabel), "<key>=<value>",
                             "Only jobs with this label; repeatable (all of them).");
    builder.addOptionWithArg({"name"}, KJ_BIND_METHOD(*this, setListName), "<name>",
                             "Only the job of this name (with --all, each user's).");
    builder.addOptionWithArg({"limit"}, KJ_BIND_METHOD(*this, setListLimit), "<n>",
                             "Only the newest N of the jobs selected.");
    builder.addOption(
        {'q', "quiet"},
        [this]() -> Validity {
          list.quiet = true;
          return true;
        },
        "Print only the ids, one per line.");
    return addJsonOption(builder, "Print the jobs' metadata as one JSON array.")
        .callAfterParsing([this]() -> Validity {
          list.json = json;
          runCommand(EXIT_FAILED, false, [this](CommandIo& cmd) { return listJobs(cmd, list); });
        })
        .build();
  }

  Validity addListState(kj::StringPtr name) {
    for (auto enumerant : capnp::Schema::from<api::State>().getEnumerants()) {
      if (enumerant.getProto().getName() == name) {
        list.states.add(static_cast<api::State>(enumerant.getOrdinal()));
        return true;
      }
    }
    return "expected one of running, exited, killed, stopped, failed, lost";
  }

  Validity addListLabel(kj::StringPtr label) {
    KJ_IF_MAYBE (equals, label.findFirst('=')) {
      if (*equals > 0) {
        list.labels.add(label);
        return true;
      }
    }
    return "expected KEY=VALUE, KEY not empty";
  }

  Validity setListName(kj::StringPtr name) {
    if (name.size() == 0) return "the job name must not be empty";
    list.name = name;
    return true;
  }

  Validity setListLimit(kj::StringPtr text) {
    KJ_IF_MAYBE (count, parseCount(text)) {
      if (*count > 0) {
        list.limit = *count;
        return true;
      }
    }
    return "expected a number of jobs above 0";
  }

  kj::MainFunc getRmMain() {
    return kj::MainBuilder(context, VERSION,
                           "Removes ended jobs: each job's record and its output, for good. "
                           "Prints the id of each job removed; a job that cannot be removed gets "
                           "one error line, the others are still removed, and the exit status is "
                           "1. Only a job's owner or an admin may remove it.")
        .addOption(
            {'f', "force"},
            [this]() -> Validity {
              force = true;
              return true;
            },
            "Stop a running job first (as `runctl stop` does), then remove it. Without it, a "
            "running job is not removed.")
        .addOptionWithArg({"grace"}, KJ_BIND_METHOD(*this, setGrace), "<duration>",
                          "With --force, how long to wait between SIGTERM and SIGKILL, as for "
                          "`runctl stop`. Default: the server's.")
        .expectOneOrMoreArgs("<id>", KJ_BIND_METHOD(*this, addJobId))
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false, [this](CommandIo& cmd) {
            return removeJobs(cmd, jobIds, force, graceMillis);
          });
        })
        .build();
  }

  kj::MainFunc getPruneMain() {
    kj::MainBuilder builder(context, VERSION,
                            "Removes your ended jobs, record and output, for good; running jobs "
                            "stay. Prints how many were removed and the size of the output they "
                            "held.");
    builder.addOptionWithArg({"older-than"}, KJ_BIND_METHOD(*this, setOlderThan), "<duration>",
                             "Only jobs that ended at least this long ago: 90s, 12h, 7d, ... "
                             "Default: every ended job.");
    builder.addOption(
        {"all-users"},
        [this]() -> Validity {
          allUsers = true;
          return true;
        },
        "Every user's ended jobs, not only yours. Admins only.");
    return builder
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false,
                     [this](CommandIo& cmd) { return pruneJobs(cmd, olderThanMillis, allUsers); });
        })
        .build();
  }

  kj::MainFunc getWhoamiMain() {
    kj::MainBuilder builder(context, VERSION,
                            "Prints the user the server knows you as (your certificate's common "
                            "name), followed by \" (admin)\" when you are one of its admins.");
    return addJsonOption(builder, "Print {\"user\": USER, \"admin\": BOOL} as one JSON object.")
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false,
                     [this](CommandIo& cmd) { return showIdentity(cmd, json); });
        })
        .build();
  }

  kj::MainFunc getCompletionMain() {
    return kj::MainBuilder(
               context, VERSION,
               "Prints a script that completes runctl's commands, their options, and "
               "the ids and names of your jobs (asking the server, with the options typed "
               "before the command) where a command takes ids.",
               COMPLETION_DETAILS)
        .expectArg("<shell>",
                   [this](kj::StringPtr shell) -> Validity {
                     if (shell == "bash") {
                       completionScript = bashCompletion();
                     } else if (shell == "zsh") {
                       completionScript = zshCompletion();
                     } else {
                       return "the shell must be bash or zsh";
                     }
                     return true;
                   })
        .callAfterParsing([this]() -> Validity {
          writeStdout(completionScript);
          context.exitWith(EXIT_OK);
        })
        .build();
  }

  kj::MainFunc getCompleteIdsMain() {
    return kj::MainBuilder(context, VERSION, "Prints the ids and names of your jobs, one per line.")
        .callAfterParsing([this]() -> Validity {
          runCommand(EXIT_FAILED, false, [](CommandIo& cmd) { return printJobIds(cmd); });
        })
        .build();
  }

  // Connects and runs `command`, then exits with what it returns. Never returns: a missing or bad
  // setting exits 2; any failure prints one line and exits `failureCode`.
  KJ_NORETURN(void runCommand(int failureCode, bool captureInterrupts,
                              kj::Function<int(CommandIo&)> command)) {
    kj::Maybe<ServerSettings> settings;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions(
                                [&]() { settings = resolveServerSettings(flags, processEnv); })) {
      writeError(errorLine(*exception));
      context.exitWith(context.getUsageExitCode());
    }

    if (captureInterrupts) {
      kj::UnixEventPort::captureSignal(SIGINT);
      kj::UnixEventPort::captureSignal(SIGTERM);
    }

    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   auto io = kj::setupAsyncIo();
                   auto connection =
                       connectToServer(io.provider->getNetwork(), KJ_ASSERT_NONNULL(settings))
                           .wait(io.waitScope);
                   CommandIo cmd{io, *connection};
                   // Exits here, without tearing down the connection: all output is already
                   // written.
                   context.exitWith(command(cmd));
                 })) {
      writeError(errorLine(*exception));
    }
    context.exitWith(failureCode);
  }
};

}  // namespace
}  // namespace client
}  // namespace runner

int main(int argc, char* argv[]) {
  runner::tls::tuneAllocatorForStreaming();
  // Help and errors say "runctl", whatever path it was started by.
  argv[0] = const_cast<char*>("runctl");
  runner::client::RunctlContext context(argv[0]);
  runner::client::Runctl runctl(context);
  return kj::runMainAndExit(context, runctl.getMain(), argc, argv);
}

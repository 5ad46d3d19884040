#include "client/spec-options.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <string.h>
#include <unistd.h>

#include "client/quantities.h"

namespace runner {
namespace client {

namespace {

using Validity = kj::MainBuilder::Validity;

// The options registered by addOptions() that take a value: endOptionsAtCommand() must skip
// their values. Keep in step with addOptions().
constexpr kj::StringPtr LONG_OPTIONS_WITH_VALUE[] = {
    "cpu"_kj,  "memory"_kj, "io-read"_kj, "io-write"_kj,
    "pids"_kj, "env"_kj,    "workdir"_kj, "executor"_kj, "max-output"_kj,
    "name"_kj, "label"_kj,  "env-file"_kj,
    "timeout"_kj, "idle-timeout"_kj,
};
constexpr kj::StringPtr SHORT_OPTIONS_WITH_VALUE = "ew"_kj;

bool takesValue(kj::StringPtr longName) {
  for (auto name : LONG_OPTIONS_WITH_VALUE) {
    if (name == longName) return true;
  }
  return false;
}

// MainBuilder's rule for a value in the next argument: it must not look like an option.
bool looksLikeOption(kj::StringPtr param) {
  return param.startsWith("-") && param.size() > 1;
}

bool isEnvName(kj::ArrayPtr<const char> name) {
  if (name.size() == 0 || ('0' <= name[0] && name[0] <= '9')) return false;
  for (char c : name) {
    bool ok =
        ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

void SpecOptions::addOptions(kj::MainBuilder& builder) {
  builder
      .addOptionWithArg({"cpu"}, KJ_BIND_METHOD(*this, setCpu), "<cores>",
                        "CPU bandwidth limit in cores: 0.5 is half a core, 2 is two cores, 250m "
                        "is 250 millicores. 0: no limit.")
      .addOptionWithArg({"memory"}, KJ_BIND_METHOD(*this, setMemory), "<size>",
                        "Memory limit, swap disabled: bytes, or a number with K, M, G or T "
                        "(binary multiples; 64M is 64 MiB, 1.5G is allowed, 64Mi and 64MB mean "
                        "the same). 0: no limit.")
      .addOptionWithArg({"io-read"}, KJ_BIND_METHOD(*this, setIoRead), "<bytes-per-second>",
                        "Disk read bandwidth limit per second, on the block device holding the "
                        "job's working directory; same syntax as --memory (e.g. 10M). 0: no "
                        "limit.")
      .addOptionWithArg({"io-write"}, KJ_BIND_METHOD(*this, setIoWrite), "<bytes-per-second>",
                        "Disk write bandwidth limit per second, like --io-read.")
      .addOptionWithArg({"pids"}, KJ_BIND_METHOD(*this, setPids), "<n>",
                        "Maximum number of processes and threads. 0: no limit.")
      .addOptionWithArg({"max-output"}, KJ_BIND_METHOD(*this, setMaxOutput), "<size>",
                        "The most output the job may write, like --memory (e.g. 100M); the job "
                        "is killed when it reaches it. Default: the server's limit, which this "
                        "cannot exceed.")
      .addOptionWithArg({"timeout"}, KJ_BIND_METHOD(*this, setTimeout), "<duration>",
                        "Stop the job (as `runctl stop` does, with the server's grace period) "
                        "once it has run this long: 90s, 30m, 2h, 1d, ...; its status then says "
                        "\"Ended by: timeout\". At most 10 years. Default: none.")
      .addOptionWithArg({"idle-timeout"}, KJ_BIND_METHOD(*this, setIdleTimeout), "<duration>",
                        "Stop the job likewise once it has written no output for this long "
                        "(\"Ended by: idle timeout\"). Default: none.")
      .addOption({"isolate"}, KJ_BIND_METHOD(*this, setIsolate),
                 "Run in new PID, mount and network namespaces: the job is PID 1 with its own "
                 "/proc, and has only a loopback network.")
      .addOptionWithArg({'e', "env"}, KJ_BIND_METHOD(*this, addEnv), "<name>=<value>",
                        "Set an environment variable for the job; repeatable. The job never "
                        "inherits runctl's or the server's environment: it gets PATH, HOME, "
                        "USER, LANG, then these (which may override them).")
      .addOptionWithArg({"env-file"}, KJ_BIND_METHOD(*this, addEnvFile), "<file>",
                        "Set the environment variables listed in a file, in docker's format: "
                        "NAME=VALUE lines taken as they stand (no quotes processed), or a bare "
                        "NAME for runctl's own value of NAME; lines starting with # and blank "
                        "lines are skipped. Repeatable; --env wins over a file.")
      .addOptionWithArg({'w', "workdir"}, KJ_BIND_METHOD(*this, setWorkdir), "<dir>",
                        "Absolute working directory of the job. Default: the home directory of "
                        "the user jobs run as.")
      .addOptionWithArg({"executor"}, KJ_BIND_METHOD(*this, setExecutor), "<name>",
                        "How the server runs the job, e.g. local or cgroup. Default: the "
                        "server's default executor.")
      .addOptionWithArg({"name"}, KJ_BIND_METHOD(*this, setName), "<name>",
                        "A name for the job, unique among your jobs that are not removed; other "
                        "commands take it in place of the id. 1 to 64 letters, digits, '.', '_' "
                        "or '-', not only hexadecimal digits and '-'.")
      .addOptionWithArg({"label"}, KJ_BIND_METHOD(*this, addLabel), "<key>=<value>",
                        "Tag the job; repeatable (at most 32). `runctl list --label` selects by "
                        "them. KEY: 1 to 64 letters, digits, '.', '_', '-' or '/'; VALUE: at "
                        "most 256 bytes.");
}

kj::MainBuilder& SpecOptions::addCommandArgs(kj::MainBuilder& builder) {
  return builder.expectArg("<command>", KJ_BIND_METHOD(*this, setCommand))
      .expectZeroOrMoreArgs("<arg>", KJ_BIND_METHOD(*this, addArg));
}

kj::Own<capnp::MallocMessageBuilder> SpecOptions::build() const {
  auto message = kj::heap<capnp::MallocMessageBuilder>();
  auto spec = message->initRoot<api::JobSpec>();
  spec.setCommand(command);
  auto argList = spec.initArgs(args.size());
  for (auto i : kj::indices(args)) argList.set(i, args[i]);
  // The files' entries, then --env's; a later entry of a name replaces an earlier one in place.
  kj::Vector<kj::StringPtr> assignments;
  for (auto& entry : fileEnv) assignments.add(entry);
  assignments.addAll(env);
  kj::Vector<kj::StringPtr> merged;
  for (auto assignment : assignments) {
    // addEnv() and parseEnvFile() checked that there is a '='.
    auto name =
        kj::heapString(assignment.slice(0, KJ_ASSERT_NONNULL(assignment.findFirst('=')) + 1));
    bool replaced = false;
    for (auto& earlier : merged) {
      if (earlier.startsWith(name)) {
        earlier = assignment;
        replaced = true;
      }
    }
    if (!replaced) merged.add(assignment);
  }
  auto envList = spec.initEnv(merged.size());
  for (auto i : kj::indices(merged)) {
    size_t equals = KJ_ASSERT_NONNULL(merged[i].findFirst('='));
    envList[i].setName(kj::heapString(merged[i].slice(0, equals)));
    envList[i].setValue(merged[i].slice(equals + 1));
  }
  spec.setWorkingDir(workingDir);
  auto limits = spec.initLimits();
  limits.setCpuMillicores(cpuMillicores);
  limits.setMemoryBytes(memoryBytes);
  limits.setIoReadBytesPerSec(ioReadBytesPerSec);
  limits.setIoWriteBytesPerSec(ioWriteBytesPerSec);
  limits.setPids(pids);
  auto isolation = spec.initIsolation();
  isolation.setPid(isolate);
  isolation.setMount(isolate);
  isolation.setNet(isolate);
  spec.setExecutor(executor);
  spec.setMaxOutputBytes(maxOutputBytes);
  spec.setName(name);
  auto labelList = spec.initLabels(labels.size());
  for (auto i : kj::indices(labels)) {
    // addLabel() checked that there is a '='.
    size_t equals = KJ_ASSERT_NONNULL(labels[i].findFirst('='));
    labelList[i].setKey(kj::heapString(labels[i].slice(0, equals)));
    labelList[i].setValue(labels[i].slice(equals + 1));
  }
  spec.setTimeoutMillis(timeoutMillis);
  spec.setIdleTimeoutMillis(idleTimeoutMillis);
  return message;
}

kj::Array<kj::StringPtr> SpecOptions::markEndOfOptions(kj::ArrayPtr<const kj::StringPtr> params) {
  kj::Vector<kj::StringPtr> result(params.size() + 1);
  size_t i = 0;
  for (; i < params.size(); i++) {
    kj::StringPtr param = params[i];
    if (param == "--") break;
    if (param.startsWith("--")) {
      result.add(param);
      bool inlineValue = param.findFirst('=') != nullptr;
      if (!inlineValue && takesValue(param.slice(2)) && i + 1 < params.size() &&
          !looksLikeOption(params[i + 1])) {
        result.add(params[++i]);
      }
    } else if (looksLikeOption(param)) {
      result.add(param);
      // A cluster of short options: the first one that takes a value takes the rest of the
      // cluster, or else the next argument.
      for (size_t j = 1; j < param.size(); j++) {
        if (SHORT_OPTIONS_WITH_VALUE.findFirst(param[j]) != nullptr) {
          if (j + 1 == param.size() && i + 1 < params.size() && !looksLikeOption(params[i + 1])) {
            result.add(params[++i]);
          }
          break;
        }
      }
    } else {
      result.add("--");
      break;
    }
  }
  result.addAll(params.slice(i, params.size()));
  return result.releaseAsArray();
}

kj::MainFunc SpecOptions::endOptionsAtCommand(kj::MainFunc inner) {
  return [inner = kj::mv(inner)](kj::StringPtr programName,
                                 kj::ArrayPtr<const kj::StringPtr> params) mutable {
    auto rewritten = markEndOfOptions(params);
    inner(programName, rewritten);
  };
}

Validity SpecOptions::setCpu(kj::StringPtr text) {
  KJ_IF_MAYBE (value, parseCores(text)) {
    cpuMillicores = *value;
    return true;
  }
  return CORES_SYNTAX;
}

Validity SpecOptions::setMemory(kj::StringPtr text) {
  KJ_IF_MAYBE (value, parseSize(text)) {
    memoryBytes = *value;
    return true;
  }
  return SIZE_SYNTAX;
}

Validity SpecOptions::setIoRead(kj::StringPtr text) {
  KJ_IF_MAYBE (value, parseSize(text)) {
    ioReadBytesPerSec = *value;
    return true;
  }
  return SIZE_SYNTAX;
}

Validity SpecOptions::setIoWrite(kj::StringPtr text) {
  KJ_IF_MAYBE (value, parseSize(text)) {
    ioWriteBytesPerSec = *value;
    return true;
  }
  return SIZE_SYNTAX;
}

Validity SpecOptions::setPids(kj::StringPtr text) {
  KJ_IF_MAYBE (value, parseCount(text)) {
    pids = *value;
    return true;
  }
  return COUNT_SYNTAX;
}

Validity SpecOptions::setMaxOutput(kj::StringPtr text) {
  KJ_IF_MAYBE (value, parseSize(text)) {
    if (*value > 0) {
      maxOutputBytes = *value;
      return true;
    }
  }
  return "--max-output takes a size above 0, like --memory (e.g. 100M)";
}

Validity SpecOptions::setTimeout(kj::StringPtr text) {
  KJ_IF_MAYBE (millis, parseDuration(text)) {
    if (*millis > 0) {
      timeoutMillis = *millis;
      return true;
    }
  }
  return "--timeout takes a duration above 0, e.g. 500ms, 90s, 2h, 1d";
}

Validity SpecOptions::setIdleTimeout(kj::StringPtr text) {
  KJ_IF_MAYBE (millis, parseDuration(text)) {
    if (*millis > 0) {
      idleTimeoutMillis = *millis;
      return true;
    }
  }
  return "--idle-timeout takes a duration above 0, e.g. 500ms, 90s, 2h, 1d";
}

Validity SpecOptions::setIsolate() {
  isolate = true;
  return true;
}

Validity SpecOptions::addEnv(kj::StringPtr assignment) {
  KJ_IF_MAYBE (equals, assignment.findFirst('=')) {
    if (isEnvName(assignment.slice(0, *equals))) {
      env.add(assignment);
      return true;
    }
  }
  return "expected NAME=VALUE, NAME made of letters, digits and '_', not starting with a digit";
}

Validity SpecOptions::addEnvFile(kj::StringPtr path) {
  if (path.size() == 0) return "the env file name must not be empty";
  envFiles.add(path);
  return true;
}

Validity SpecOptions::loadEnvFiles(kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr)> getEnv) {
  for (auto path : envFiles) {
    // As large as a JobSpec may reasonably be; the server bounds the environment anyway.
    constexpr size_t MAX_ENV_FILE_BYTES = 1 << 20;
    int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kj::str(path, ": cannot read: ", strerror(errno));
    kj::AutoCloseFd file(fd);
    kj::String content;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   content = kj::FdInputStream(file.get()).readAllText(MAX_ENV_FILE_BYTES + 1);
                 })) {
      return kj::str(path, ": cannot read: ", e->getDescription());
    }
    if (content.size() > MAX_ENV_FILE_BYTES) return kj::str(path, ": larger than 1 MiB");
    KJ_IF_MAYBE (error, parseEnvFile(path, content, getEnv, fileEnv)) {
      return kj::mv(*error);
    }
  }
  return true;
}

kj::Maybe<kj::String> SpecOptions::parseEnvFile(
    kj::StringPtr fileName, kj::StringPtr content,
    kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr)>& getEnv,
    kj::Vector<kj::String>& entries) {
  // docker skips a UTF-8 byte order mark.
  if (content.startsWith("\xef\xbb\xbf")) content = content.slice(3);
  size_t lineNumber = 0;
  while (content.size() > 0) {
    ++lineNumber;
    kj::ArrayPtr<const char> line = content;
    KJ_IF_MAYBE (newline, content.findFirst('\n')) {
      line = content.slice(0, *newline);
      content = content.slice(*newline + 1);
    } else {
      content = "";
    }
    if (line.size() > 0 && line.back() == '\r') line = line.slice(0, line.size() - 1);
    size_t start = 0;
    while (start < line.size() && (line[start] == ' ' || line[start] == '\t')) ++start;
    line = line.slice(start, line.size());
    if (line.size() == 0 || line[0] == '#') continue;
    if (memchr(line.begin(), '\0', line.size()) != nullptr) {
      return kj::str(fileName, ":", lineNumber, ": contains a NUL byte");
    }
    size_t nameEnd = line.size();
    for (size_t i = 0; i < line.size(); i++) {
      if (line[i] == '=') {
        nameEnd = i;
        break;
      }
    }
    auto name = line.slice(0, nameEnd);
    if (!isEnvName(name)) {
      return kj::str(fileName, ":", lineNumber,
                     ": expected NAME=VALUE or NAME, NAME made of letters, digits and '_', not "
                     "starting with a digit");
    }
    if (nameEnd < line.size()) {
      entries.add(kj::heapString(line));
    } else {
      auto nameText = kj::heapString(name);
      KJ_IF_MAYBE (value, getEnv(nameText)) {
        entries.add(kj::str(nameText, "=", *value));
      }
    }
  }
  return nullptr;
}

Validity SpecOptions::setWorkdir(kj::StringPtr dir) {
  if (!dir.startsWith("/")) return "the working directory must be an absolute path";
  workingDir = dir;
  return true;
}

Validity SpecOptions::setExecutor(kj::StringPtr name) {
  if (name.size() == 0) return "the executor name must not be empty";
  executor = name;
  return true;
}

Validity SpecOptions::setName(kj::StringPtr text) {
  // The server checks the rest, for every client alike.
  if (text.size() == 0) return "the job name must not be empty";
  name = text;
  return true;
}

Validity SpecOptions::addLabel(kj::StringPtr label) {
  KJ_IF_MAYBE (equals, label.findFirst('=')) {
    if (*equals > 0) {
      labels.add(label);
      return true;
    }
  }
  return "expected KEY=VALUE, KEY not empty";
}

Validity SpecOptions::setCommand(kj::StringPtr text) {
  if (text.size() == 0) return "the command must not be empty";
  command = text;
  return true;
}

Validity SpecOptions::addArg(kj::StringPtr arg) {
  args.add(arg);
  return true;
}

}  // namespace client
}  // namespace runner

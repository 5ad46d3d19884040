#include "client/spec-options.h"

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
      .addOptionWithArg({'w', "workdir"}, KJ_BIND_METHOD(*this, setWorkdir), "<dir>",
                        "Absolute working directory of the job. Default: the home directory of "
                        "the user jobs run as.")
      .addOptionWithArg({"executor"}, KJ_BIND_METHOD(*this, setExecutor), "<name>",
                        "How the server runs the job, e.g. local or cgroup. Default: the "
                        "server's default executor.");
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
  auto envList = spec.initEnv(env.size());
  for (auto i : kj::indices(env)) {
    // addEnv() checked that there is a '='.
    size_t equals = KJ_ASSERT_NONNULL(env[i].findFirst('='));
    envList[i].setName(kj::heapString(env[i].slice(0, equals)));
    envList[i].setValue(env[i].slice(equals + 1));
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

#include "runner/rpc-convert.h"

#include <kj/debug.h>

#include "runner/printable.h"
#include "runner/user-error.h"

namespace runner {

namespace {

void fillLimits(api::Limits::Builder out, const executors::Limits& limits) {
  out.setCpuMillicores(limits.cpuMillicores);
  out.setMemoryBytes(limits.memoryBytes);
  out.setIoReadBytesPerSec(limits.ioReadBytesPerSec);
  out.setIoWriteBytesPerSec(limits.ioWriteBytesPerSec);
  out.setPids(limits.pids);
}

}  // namespace

api::State toApiState(JobState state) {
  switch (state) {
    case JobState::RUNNING:
      return api::State::RUNNING;
    case JobState::EXITED:
      return api::State::EXITED;
    case JobState::KILLED:
      return api::State::KILLED;
    case JobState::STOPPED:
      return api::State::STOPPED;
    case JobState::FAILED:
      return api::State::FAILED;
    case JobState::LOST:
      return api::State::LOST;
  }
  KJ_UNREACHABLE;
}

api::EndReason toApiEndReason(EndReason reason) {
  switch (reason) {
    case EndReason::NONE:
      return api::EndReason::NONE;
    case EndReason::STOPPED:
      return api::EndReason::STOPPED;
    case EndReason::TIMEOUT:
      return api::EndReason::TIMEOUT;
    case EndReason::IDLE_TIMEOUT:
      return api::EndReason::IDLE_TIMEOUT;
    case EndReason::OUTPUT_LIMIT:
      return api::EndReason::OUTPUT_LIMIT;
  }
  KJ_UNREACHABLE;
}

JobState fromApiState(api::State state) {
  switch (state) {
    case api::State::RUNNING:
      return JobState::RUNNING;
    case api::State::EXITED:
      return JobState::EXITED;
    case api::State::KILLED:
      return JobState::KILLED;
    case api::State::STOPPED:
      return JobState::STOPPED;
    case api::State::FAILED:
      return JobState::FAILED;
    case api::State::LOST:
      return JobState::LOST;
  }
  // A state a newer client knows and this server does not.
  throwUserError(ErrorKind::INVALID,
                 kj::str("unknown job state ", uint(state), " in the list filter"));
}

void fillJobInfo(api::JobInfo::Builder info, const Job& job) {
  auto& rec = job.record();
  info.setId(rec.id);
  info.setOwner(rec.owner);
  info.setCommand(rec.command);
  auto args = info.initArgs(rec.args.size());
  for (auto i : kj::indices(rec.args)) args.set(i, rec.args[i]);
  info.setState(toApiState(rec.state));
  info.setExitCode(rec.exitCode);
  info.setTermSignal(rec.termSignal);
  info.setOomKilled(rec.oomKilled);
  info.setOomKilledMain(rec.oomKilledMain);
  info.setError(rec.error);
  info.setCreatedAt(rec.createdAt);
  info.setStartedAt(rec.startedAt);
  info.setEndedAt(rec.endedAt);
  fillLimits(info.initLimits(), rec.limits);
  auto isolation = info.initIsolation();
  isolation.setPid(rec.isolation.pid);
  isolation.setMount(rec.isolation.mount);
  isolation.setNet(rec.isolation.net);
  info.setExecutor(rec.executor);
  auto usage = info.initUsage();
  usage.setCpuUserMicros(rec.usage.cpuUserMicros);
  usage.setCpuSystemMicros(rec.usage.cpuSystemMicros);
  usage.setPeakMemoryBytes(rec.usage.peakMemoryBytes);
  info.setOutputBytes(job.outputBytes());
  info.setWorkingDir(rec.workingDir);
  auto cgroup = info.initCgroup();
  KJ_IF_MAYBE (placed, rec.placement.cgroup) {
    cgroup.setVersion(placed->version);
    cgroup.setPath(placed->path);
    cgroup.setIoDevice(placed->ioDevice);
  }
  info.setUid(rec.uid);
  info.setMaxOutputBytes(rec.maxOutputBytes);
  info.setGid(rec.gid);
  info.setName(rec.name);
  auto labels = info.initLabels(rec.labels.size());
  for (auto i : kj::indices(rec.labels)) {
    labels[i].setKey(rec.labels[i].key);
    labels[i].setValue(rec.labels[i].value);
  }
  info.setEndReason(toApiEndReason(rec.endReason));
  info.setTimeoutMillis(rec.timeoutMillis);
  info.setIdleTimeoutMillis(rec.idleTimeoutMillis);
}

void fillJobInfo(api::JobInfo::Builder info, const Job& job, const executors::Usage& live) {
  fillJobInfo(info, job);
  if (job.hasEnded()) return;
  auto usage = info.getUsage();
  usage.setCpuUserMicros(live.cpuUserMicros);
  usage.setCpuSystemMicros(live.cpuSystemMicros);
  usage.setPeakMemoryBytes(live.peakMemoryBytes);
  usage.setCurrentMemoryBytes(live.currentMemoryBytes);
}

kj::Array<JobLabel> toLabels(capnp::List<api::Label>::Reader labels) {
  if (labels.size() > MAX_JOB_LABELS) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("too many labels (", labels.size(), "; at most ", MAX_JOB_LABELS, ")"));
  }
  return KJ_MAP(label, labels) {
    return JobLabel{kj::str(label.getKey()), kj::str(label.getValue())};
  };
}

StartRequest toStartRequest(api::JobSpec::Reader spec) {
  StartRequest request;
  size_t specBytes = 0;
  auto text = [&](capnp::Text::Reader value, kj::StringPtr what) {
    if (!isValidUtf8(value)) {
      throwUserError(ErrorKind::INVALID, kj::str("the job's ", what, " is not valid UTF-8"));
    }
    specBytes += value.size() + 1;
    return kj::str(value);
  };
  request.command = text(spec.getCommand(), "command");
  auto args = spec.getArgs();
  if (args.size() > MAX_ARGS) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("too many arguments (", args.size(), "; at most ", MAX_ARGS, ")"));
  }
  request.args = KJ_MAP(arg, args) {
    return text(arg, "argument");
  };
  auto env = spec.getEnv();
  if (env.size() > MAX_ENV) {
    throwUserError(ErrorKind::INVALID, kj::str("too many environment variables (", env.size(),
                                               "; at most ", MAX_ENV, ")"));
  }
  request.env = KJ_MAP(var, env) {
    auto name = var.getName();
    if (name.size() == 0 || name.findFirst('=') != nullptr) {
      throwUserError(ErrorKind::INVALID, kj::str("environment variable name '", printable(name),
                                                 "': it must be "
                                                 "non-empty and have no '='"));
    }
    return kj::str(text(name, "environment"), '=', text(var.getValue(), "environment"));
  };
  request.workingDir = text(spec.getWorkingDir(), "working directory");
  if (specBytes > MAX_SPEC_BYTES) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("the job's command line and environment are too large (", specBytes,
                           " bytes; at most ", MAX_SPEC_BYTES, ")"));
  }
  request.maxOutputBytes = spec.getMaxOutputBytes();
  request.timeoutMillis = spec.getTimeoutMillis();
  request.idleTimeoutMillis = spec.getIdleTimeoutMillis();
  if (request.timeoutMillis > MAX_TIMEOUT_MILLIS ||
      request.idleTimeoutMillis > MAX_TIMEOUT_MILLIS) {
    throwUserError(ErrorKind::INVALID, kj::str("a timeout must be at most ",
                                               MAX_TIMEOUT_MILLIS / 1000, " seconds (10 years)"));
  }
  auto limits = spec.getLimits();
  request.limits.cpuMillicores = limits.getCpuMillicores();
  request.limits.memoryBytes = limits.getMemoryBytes();
  request.limits.ioReadBytesPerSec = limits.getIoReadBytesPerSec();
  request.limits.ioWriteBytesPerSec = limits.getIoWriteBytesPerSec();
  request.limits.pids = limits.getPids();
  auto isolation = spec.getIsolation();
  request.isolation.pid = isolation.getPid();
  request.isolation.mount = isolation.getMount();
  request.isolation.net = isolation.getNet();
  request.executor = text(spec.getExecutor(), "executor");
  request.name = kj::str(spec.getName());
  request.labels = toLabels(spec.getLabels());
  return request;
}

}  // namespace runner

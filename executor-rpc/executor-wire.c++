#include "executor-rpc/executor-wire.h"

namespace runner::executor_rpc {
namespace {

void fillTextList(capnp::List<capnp::Text>::Builder out, kj::ArrayPtr<const kj::String> in) {
  for (auto i : kj::indices(in)) out.set(i, in[i]);
}

kj::Array<kj::String> toStrings(capnp::List<capnp::Text>::Reader in) {
  return KJ_MAP(text, in) {
    return kj::str(text);
  };
}

}  // namespace

void fillLaunchRequest(wire::LaunchRequest::Builder out, const executors::LaunchRequest& request) {
  out.setJobId(request.jobId);
  fillTextList(out.initArgv(request.argv.size()), request.argv);
  fillTextList(out.initEnv(request.env.size()), request.env);
  out.setWorkingDir(request.workingDir);

  auto& user = request.credentials;
  auto credentials = out.initCredentials();
  credentials.setUid(user.uid);
  credentials.setGid(user.gid);
  auto groups = credentials.initSupplementaryGroups(user.supplementaryGroups.size());
  for (auto i : kj::indices(user.supplementaryGroups)) groups.set(i, user.supplementaryGroups[i]);
  credentials.setUserName(user.userName);
  credentials.setHomeDir(user.homeDir);

  auto limits = out.initLimits();
  limits.setCpuMillicores(request.limits.cpuMillicores);
  limits.setMemoryBytes(request.limits.memoryBytes);
  limits.setIoReadBytesPerSec(request.limits.ioReadBytesPerSec);
  limits.setIoWriteBytesPerSec(request.limits.ioWriteBytesPerSec);
  limits.setPids(request.limits.pids);

  auto isolation = out.initIsolation();
  isolation.setPid(request.isolation.pid);
  isolation.setMount(request.isolation.mount);
  isolation.setNet(request.isolation.net);
}

executors::LaunchRequest toLaunchRequest(wire::LaunchRequest::Reader in, int outputFd) {
  executors::LaunchRequest request;
  request.jobId = kj::str(in.getJobId());
  request.argv = toStrings(in.getArgv());
  request.env = toStrings(in.getEnv());
  request.workingDir = kj::str(in.getWorkingDir());
  request.outputFd = outputFd;

  auto credentials = in.getCredentials();
  request.credentials.uid = credentials.getUid();
  request.credentials.gid = credentials.getGid();
  request.credentials.supplementaryGroups =
      KJ_MAP(gid, credentials.getSupplementaryGroups())->gid_t {
    return gid;
  };
  request.credentials.userName = kj::str(credentials.getUserName());
  request.credentials.homeDir = kj::str(credentials.getHomeDir());

  auto limits = in.getLimits();
  request.limits.cpuMillicores = limits.getCpuMillicores();
  request.limits.memoryBytes = limits.getMemoryBytes();
  request.limits.ioReadBytesPerSec = limits.getIoReadBytesPerSec();
  request.limits.ioWriteBytesPerSec = limits.getIoWriteBytesPerSec();
  request.limits.pids = limits.getPids();

  auto isolation = in.getIsolation();
  request.isolation.pid = isolation.getPid();
  request.isolation.mount = isolation.getMount();
  request.isolation.net = isolation.getNet();
  return request;
}

void fillPlacement(wire::Placement::Builder out, const executors::Placement& placement) {
  KJ_IF_MAYBE (cgroup, placement.cgroup) {
    out.setCgroupVersion(cgroup->version);
    out.setCgroupPath(cgroup->path);
    out.setIoDevice(cgroup->ioDevice);
  }
}

executors::Placement toPlacement(wire::Placement::Reader in) {
  executors::Placement placement;
  if (in.getCgroupVersion() != 0) {
    placement.cgroup = executors::Placement::Cgroup{
        in.getCgroupVersion(), kj::str(in.getCgroupPath()), kj::str(in.getIoDevice())};
  }
  return placement;
}

void fillUsage(wire::Usage::Builder out, const executors::Usage& usage) {
  out.setCpuUserMicros(usage.cpuUserMicros);
  out.setCpuSystemMicros(usage.cpuSystemMicros);
  out.setPeakMemoryBytes(usage.peakMemoryBytes);
  out.setCurrentMemoryBytes(usage.currentMemoryBytes);
}

executors::Usage toUsage(wire::Usage::Reader in) {
  executors::Usage usage;
  usage.cpuUserMicros = in.getCpuUserMicros();
  usage.cpuSystemMicros = in.getCpuSystemMicros();
  usage.peakMemoryBytes = in.getPeakMemoryBytes();
  usage.currentMemoryBytes = in.getCurrentMemoryBytes();
  return usage;
}

void fillExitStatus(wire::ExitStatus::Builder out, const executors::ExitStatus& status) {
  out.setSignaled(status.signaled);
  out.setExitCode(status.exitCode);
  out.setTermSignal(status.termSignal);
  out.setOomKilled(status.oomKilled);
  out.setOomKilledMain(status.oomKilledMain);
  fillUsage(out.initUsage(), status.usage);
  if (status.lost.size() > 0) out.setLost(status.lost);
}

executors::ExitStatus toExitStatus(wire::ExitStatus::Reader in) {
  executors::ExitStatus status;
  status.signaled = in.getSignaled();
  status.exitCode = in.getExitCode();
  status.termSignal = in.getTermSignal();
  status.oomKilled = in.getOomKilled();
  status.oomKilledMain = in.getOomKilledMain();
  status.usage = toUsage(in.getUsage());
  // One line, of bounded length, whatever the other side sent.
  auto lost = in.getLost();
  status.lost = kj::str(lost.slice(0, kj::min(lost.size(), size_t(1024))));
  for (auto& c : status.lost) {
    if (c == '\n' || c == '\0') c = ' ';
  }
  return status;
}

}  // namespace runner::executor_rpc

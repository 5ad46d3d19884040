#pragma once
// The options that describe a job on `runctl start` and `runctl run`: the LIMITS (--cpu,
// --memory, --io-read, --io-write, --pids, --isolate), --timeout, --idle-timeout, --env,
// --workdir, --executor, and the
// command with its arguments; and the JobSpec they add up to.

#include <capnp/message.h>
#include <kj/main.h>
#include <kj/vector.h>

#include "schema/runner.capnp.h"

namespace runner {
namespace client {

class SpecOptions {
 public:
  SpecOptions() = default;
  KJ_DISALLOW_COPY(SpecOptions);

  // Registers the LIMITS, --env/-e, --workdir/-w and --executor. Bad values are usage errors that
  // quote the accepted syntax.
  void addOptions(kj::MainBuilder& builder);

  // Registers the positional <command> [<arg>...].
  kj::MainBuilder& addCommandArgs(kj::MainBuilder& builder);

  // The JobSpec described by what was parsed.
  kj::Own<capnp::MallocMessageBuilder> build() const;

  // Wraps a start/run main so that option parsing ends at the command, as with `docker run` or
  // `env`: `runctl run ls -l` runs `ls -l` rather than rejecting -l as an option of runctl.
  static kj::MainFunc endOptionsAtCommand(kj::MainFunc inner);

  // What that wrapper does to the arguments: inserts "--" before the first one that is neither an
  // option nor an option's value (unless a "--" comes first). The result points into `params`.
  static kj::Array<kj::StringPtr> markEndOfOptions(kj::ArrayPtr<const kj::StringPtr> params);

  // Option handlers (the MainBuilder callbacks).
  kj::MainBuilder::Validity setCpu(kj::StringPtr text);
  kj::MainBuilder::Validity setMemory(kj::StringPtr text);
  kj::MainBuilder::Validity setIoRead(kj::StringPtr text);
  kj::MainBuilder::Validity setIoWrite(kj::StringPtr text);
  kj::MainBuilder::Validity setPids(kj::StringPtr text);
  kj::MainBuilder::Validity setMaxOutput(kj::StringPtr text);
  kj::MainBuilder::Validity setTimeout(kj::StringPtr text);
  kj::MainBuilder::Validity setIdleTimeout(kj::StringPtr text);
  kj::MainBuilder::Validity setIsolate();
  kj::MainBuilder::Validity addEnv(kj::StringPtr assignment);
  kj::MainBuilder::Validity setWorkdir(kj::StringPtr dir);
  kj::MainBuilder::Validity setExecutor(kj::StringPtr name);
  kj::MainBuilder::Validity setCommand(kj::StringPtr command);
  kj::MainBuilder::Validity addArg(kj::StringPtr arg);

 private:
  uint32_t cpuMillicores = 0;
  uint64_t memoryBytes = 0;
  uint64_t ioReadBytesPerSec = 0;
  uint64_t ioWriteBytesPerSec = 0;
  uint32_t pids = 0;
  uint64_t maxOutputBytes = 0;
  uint64_t timeoutMillis = 0;
  uint64_t idleTimeoutMillis = 0;
  bool isolate = false;
  // "NAME=VALUE" as given; checked to have a name.
  kj::Vector<kj::StringPtr> env;
  kj::StringPtr workingDir;
  kj::StringPtr executor;
  kj::StringPtr command;
  kj::Vector<kj::StringPtr> args;
};

}  // namespace client
}  // namespace runner

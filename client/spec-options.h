#pragma once
// The options that describe a job on `runctl start` and `runctl run`: the LIMITS (--cpu,
// --memory, --io-read, --io-write, --pids, --isolate), --timeout, --idle-timeout, --env,
// --env-file, --workdir, --executor, --name, --label, and the command with its arguments; and the
// JobSpec they add up to.

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

  // Registers the LIMITS, --env/-e, --workdir/-w, --executor, --name and --label. Bad values are
  // usage errors that quote the accepted syntax.
  void addOptions(kj::MainBuilder& builder);

  // Registers the positional <command> [<arg>...].
  kj::MainBuilder& addCommandArgs(kj::MainBuilder& builder);

  // Reads the --env-file files, once options are parsed. An error names FILE:LINE.
  kj::MainBuilder::Validity loadEnvFiles(
      kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr)> getEnv);

  // The JobSpec described by what was parsed. A variable set by --env and in an --env-file gets
  // --env's value; within the files, the last one wins.
  kj::Own<capnp::MallocMessageBuilder> build() const;

  // Reads an env file in docker's format (`docker run --env-file`) into "NAME=VALUE" entries:
  // one variable a line, leading blanks ignored; lines starting with '#' and blank lines
  // skipped; NAME=VALUE takes VALUE as it stands (no quotes or escapes processed, a '#' in it is
  // kept, a CR before the newline is dropped); a bare NAME takes runctl's own value of NAME
  // (`getEnv`), or is skipped if runctl has none. Returns "FILE:LINE: PROBLEM" for a bad line.
  static kj::Maybe<kj::String> parseEnvFile(
      kj::StringPtr fileName, kj::StringPtr content,
      kj::Function<kj::Maybe<kj::StringPtr>(kj::StringPtr)>& getEnv,
      kj::Vector<kj::String>& entries);

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
  kj::MainBuilder::Validity addEnvFile(kj::StringPtr path);
  kj::MainBuilder::Validity setWorkdir(kj::StringPtr dir);
  kj::MainBuilder::Validity setExecutor(kj::StringPtr name);
  kj::MainBuilder::Validity setName(kj::StringPtr text);
  kj::MainBuilder::Validity addLabel(kj::StringPtr label);
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
  kj::Vector<kj::StringPtr> envFiles;
  // "NAME=VALUE" read from envFiles by loadEnvFiles().
  kj::Vector<kj::String> fileEnv;
  kj::StringPtr workingDir;
  kj::StringPtr executor;
  kj::StringPtr name;
  // "KEY=VALUE" as given; checked to have a key.
  kj::Vector<kj::StringPtr> labels;
  kj::StringPtr command;
  kj::Vector<kj::StringPtr> args;
};

}  // namespace client
}  // namespace runner

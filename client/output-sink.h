#pragma once
// The client side of a job's output: an OutputSink that writes what runnerd streams, byte for
// byte, to a file descriptor (runctl's stdout), and reports how the stream ended.

#include <capnp/message.h>
#include <kj/async.h>

#include "schema/runner.capnp.h"

namespace runner {
namespace client {

// A JobInfo copied out of the RPC message that carried it, so that it outlives the call.
class OwnedJobInfo {
 public:
  explicit OwnedJobInfo(api::JobInfo::Reader info);
  KJ_DISALLOW_COPY(OwnedJobInfo);

  api::JobInfo::Reader get();

 private:
  capnp::MallocMessageBuilder message;
};

// How a watch ended: with the JobInfo that `end` carried, or null when the reader of the file
// descriptor went away (EPIPE: `runctl logs ID | head`). Other failures reject the promise: a
// write error, or the server dropping the sink before calling `end`.
using OutputEnd = kj::Maybe<kj::Own<OwnedJobInfo>>;

// An OutputSink and the promise of its end.
struct OutputWatch {
  api::OutputSink::Client sink;
  kj::Promise<OutputEnd> ended;
};

// Makes a sink that writes to `fd`. `write` returns once all the bytes are written to `fd`
// (blocking writes: a slow reader of `fd` holds back the RPC stream, which is the flow control),
// so at most the server's stream window of output is ever buffered.
OutputWatch watchIntoFd(int fd);

}  // namespace client
}  // namespace runner

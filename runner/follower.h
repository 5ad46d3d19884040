#pragma once
// Followers: stream a job's output file to a sink, from any offset, live.
//
// A follower reads the output file in large chunks and hands each to its sink, reading the
// next one only after the sink has taken the previous one: one chunk (plus what the transport
// keeps in flight) is all the memory a slow reader can pin. At the end of the file of a running
// job it sleeps until the file changes or the job ends — no polling. Any number of followers may
// read one job; each has its own descriptor and offset, and the page cache is their shared buffer.

#include <kj/async.h>

#include "runner/job-record.h"
#include "runner/job-table.h"

namespace runner {

// Where a follower delivers output. The RPC layer adapts OutputSink capabilities to it.
class OutputSink {
 public:
  virtual ~OutputSink() noexcept(false) = default;

  // Where the follower reads the next chunk: `size` bytes owned by the sink, valid until the
  // following write() or nextBuffer(). The RPC layer hands out the data field of its next
  // request, so a chunk goes from the page cache into the message without another copy.
  virtual kj::ArrayPtr<kj::byte> nextBuffer(size_t size) = 0;

  // The next bytes, in order: the first `size` bytes of the buffer of the last nextBuffer().
  // The follower asks for no other buffer until the promise resolves.
  virtual kj::Promise<void> write(size_t size) = 0;

  // Everything asked for was delivered: the job has ended (with `follow`), or the end of the
  // output at the time was reached (without it).
  virtual kj::Promise<void> end(const Job& job) = 0;
};

// Bytes per read(): large enough that a fast reader makes few round trips, small enough that
// a stalled one pins little.
constexpr size_t FOLLOWER_CHUNK_BYTES = 256 * 1024;

// Streams `job`'s output from byte `fromOffset` to `sink`. With `follow`, keeps going until the
// job has ended and every byte is delivered; without it, stops at the current end. Resolves
// after `sink.end()` resolved. Dropping the promise cancels the follower and frees everything
// it holds; `job` and `sink` must outlive the promise.
kj::Promise<void> followOutput(Job& job, OutputSink& sink, uint64_t fromOffset, bool follow);

}  // namespace runner

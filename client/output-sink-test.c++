#include "client/output-sink.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/io.h>
#include <kj/thread.h>

#include <unistd.h>
#include <atomic>

namespace runner {
namespace client {
namespace {

struct Pipe {
  kj::AutoCloseFd readEnd;
  kj::AutoCloseFd writeEnd;

  Pipe() {
    int fds[2];
    KJ_SYSCALL(pipe(fds));
    readEnd = kj::AutoCloseFd(fds[0]);
    writeEnd = kj::AutoCloseFd(fds[1]);
  }
};

kj::Promise<void> write(api::OutputSink::Client& sink, kj::ArrayPtr<const kj::byte> bytes) {
  auto request = sink.writeRequest();
  request.setData(bytes);
  return request.send();
}

TEST(OutputSink, WritesBinaryOutputByteForByteAndEndsWithTheJobInfo) {
  auto io = kj::setupAsyncIo();
  Pipe pipe;
  auto watch = watchIntoFd(pipe.writeEnd);

  kj::byte all[256];
  for (int i = 0; i < 256; i++) all[i] = i;
  write(watch.sink, kj::arrayPtr(all, 100)).wait(io.waitScope);
  write(watch.sink, kj::arrayPtr(all + 100, 156)).wait(io.waitScope);

  auto end = watch.sink.endRequest();
  end.initInfo().setId("job-1");
  end.getInfo().setExitCode(4);
  end.send().wait(io.waitScope);

  auto ended = watch.ended.wait(io.waitScope);
  KJ_IF_MAYBE (info, ended) {
    EXPECT_EQ((*info)->get().getId(), "job-1");
    EXPECT_EQ((*info)->get().getExitCode(), 4);
  } else {
    ADD_FAILURE() << "expected the end's JobInfo";
  }

  pipe.writeEnd = nullptr;
  watch.sink = nullptr;
  kj::byte received[300];
  size_t n =
      kj::FdInputStream(pipe.readEnd.get()).tryRead(received, sizeof(received), sizeof(received));
  ASSERT_EQ(n, 256u);
  EXPECT_EQ(memcmp(received, all, 256), 0);
}

TEST(OutputSink, WriteResolvesOnlyOnceTheBytesAreWritten) {
  auto io = kj::setupAsyncIo();
  Pipe pipe;
  auto watch = watchIntoFd(pipe.writeEnd);
  auto chunk = kj::heapArray<kj::byte>(1 << 20);
  memset(chunk.begin(), 'x', chunk.size());

  // A slow reader on another thread: a megabyte does not fit in a pipe, so the write can only
  // resolve once the reader has taken all but (at most) a pipe's worth of it, plus the one
  // buffer it may have read without counting yet.
  std::atomic<size_t> total(0);
  {
    kj::Thread reader([&]() {
      kj::byte buffer[4096];
      ssize_t n;
      while ((n = read(pipe.readEnd, buffer, sizeof(buffer))) > 0) {
        total += n;
        usleep(50);
      }
    });
    write(watch.sink, chunk).wait(io.waitScope);
    EXPECT_GE(total.load() + fcntl(pipe.writeEnd, F_GETPIPE_SZ) + 4096, chunk.size());
    pipe.writeEnd = nullptr;
  }
  EXPECT_EQ(total.load(), chunk.size());
}

TEST(OutputSink, AClosedReaderEndsTheWatchQuietly) {
  auto io = kj::setupAsyncIo();
  Pipe pipe;
  pipe.readEnd = nullptr;
  auto watch = watchIntoFd(pipe.writeEnd);
  kj::byte data[] = {1, 2, 3};
  // The sink refuses further output...
  EXPECT_ANY_THROW(write(watch.sink, data).wait(io.waitScope));
  // ...and the watch ends without a JobInfo (EPIPE is not an error of runctl's).
  auto ended = watch.ended.wait(io.waitScope);
  EXPECT_TRUE(ended == nullptr);
}

TEST(OutputSink, ASinkDroppedBeforeItsEndRejects) {
  auto io = kj::setupAsyncIo();
  Pipe pipe;
  auto watch = watchIntoFd(pipe.writeEnd);
  watch.sink = nullptr;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { watch.ended.wait(io.waitScope); })) {
    EXPECT_EQ(exception->getType(), kj::Exception::Type::DISCONNECTED);
    EXPECT_TRUE(
        kj::StringPtr(exception->getDescription()).endsWith("ended the output stream early"));
  } else {
    ADD_FAILURE() << "expected the watch to fail";
  }
}

}  // namespace
}  // namespace client
}  // namespace runner

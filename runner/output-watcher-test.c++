#include "runner/output-watcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace runner {
namespace {

// A file of its own in Bazel's temporary directory for the test (the sandbox's).
kj::String newFilePath() {
  const char* base = getenv("TEST_TMPDIR");
  auto tmpl = kj::str(base != nullptr ? base : "/tmp", "/output-watcher.XXXXXX");
  int fd = mkstemp(tmpl.begin());
  KJ_ASSERT(fd >= 0, strerror(errno), tmpl);
  close(fd);
  return tmpl;
}

struct WatchedFile {
  kj::String path = newFilePath();
  kj::AutoCloseFd fd;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  OutputWatcher watcher{io.unixEventPort};

  WatchedFile() {
    int raw = open(path.cStr(), O_WRONLY | O_APPEND | O_CLOEXEC);
    KJ_ASSERT(raw >= 0);
    fd = kj::AutoCloseFd(raw);
  }
  ~WatchedFile() { unlink(path.cStr()); }

  void append(kj::StringPtr text) {
    KJ_ASSERT(write(fd, text.begin(), text.size()) == ssize_t(text.size()));
  }

  // Whether `change` resolves within about a second of turns of the event loop.
  bool resolves(kj::Promise<void>& change) {
    auto deadline = io.provider->getTimer().afterDelay(1 * kj::SECONDS);
    return change.then([]() { return true; })
        .exclusiveJoin(deadline.then([]() { return false; }))
        .wait(io.waitScope);
  }
};

TEST(OutputWatcher, AWriteWakesTheWaiters) {
  WatchedFile file;
  auto watch = file.watcher.watch(file.path);
  auto first = watch->nextChange();
  auto second = watch->nextChange();
  file.append("line\n");
  EXPECT_TRUE(file.resolves(first));
  EXPECT_TRUE(file.resolves(second));
}

TEST(OutputWatcher, APausedWatchWakesNobodyUntilItIsWatchedAgain) {
  WatchedFile file;
  auto watch = file.watcher.watch(file.path);
  auto paused = watch->pause(file.fd.get());
  auto change = watch->nextChange();
  file.append("written while paused\n");
  // Every event the kernel has is read; none is for this waiter.
  file.io.waitScope.poll();
  EXPECT_FALSE(change.poll(file.io.waitScope));
  // Watching again wakes the waiters, as the write in between would have.
  paused = nullptr;
  EXPECT_TRUE(file.resolves(change));
  // And writes wake them again from then on.
  auto next = watch->nextChange();
  file.io.waitScope.poll();
  EXPECT_FALSE(next.poll(file.io.waitScope));
  file.append("written after\n");
  EXPECT_TRUE(file.resolves(next));
}

TEST(OutputWatcher, PausesNest) {
  WatchedFile file;
  auto watch = file.watcher.watch(file.path);
  auto outer = watch->pause(file.fd.get());
  auto inner = watch->pause(file.fd.get());
  auto change = watch->nextChange();
  inner = nullptr;
  file.append("still paused\n");
  file.io.waitScope.poll();
  EXPECT_FALSE(change.poll(file.io.waitScope));
  outer = nullptr;
  EXPECT_TRUE(file.resolves(change));
}

TEST(OutputWatcher, APauseMayOutliveItsWatch) {
  WatchedFile file;
  auto watch = file.watcher.watch(file.path);
  auto paused = watch->pause(file.fd.get());
  auto change = watch->nextChange();
  // The job ends while a follower gathers its output: the watch goes first, waking its waiters.
  watch = nullptr;
  EXPECT_TRUE(file.resolves(change));
  paused = nullptr;
  // The file can be watched anew.
  auto again = file.watcher.watch(file.path);
  auto next = again->nextChange();
  file.append("line\n");
  EXPECT_TRUE(file.resolves(next));
}

// The watches this process holds, from the fdinfo of its inotify descriptors.
size_t inotifyWatches() {
  size_t count = 0;
  DIR* dir = opendir("/proc/self/fdinfo");
  KJ_ASSERT(dir != nullptr);
  while (struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = open(kj::str("/proc/self/fdinfo/", entry->d_name).cStr(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buffer[4096];
    ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (n <= 0) continue;
    buffer[n] = '\0';
    for (char* p = buffer; (p = strstr(p, "inotify wd:")) != nullptr; p++) ++count;
  }
  closedir(dir);
  return count;
}

// A file beside the watched one, open for appending, removed with it.
struct OtherFile {
  kj::String path;
  kj::AutoCloseFd fd;
  OtherFile(kj::StringPtr beside, kj::StringPtr suffix) : path(kj::str(beside, suffix)) {
    int raw = open(path.cStr(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    KJ_ASSERT(raw >= 0);
    fd = kj::AutoCloseFd(raw);
  }
  ~OtherFile() { unlink(path.cStr()); }
  void append(kj::StringPtr text) {
    KJ_ASSERT(write(fd, text.begin(), text.size()) == ssize_t(text.size()));
  }
};

TEST(OutputWatcher, APauseThroughAnotherFilesDescriptorSilencesNothing) {
  WatchedFile file;
  OtherFile unwatched(file.path, ".unwatched");
  {
    auto watch = file.watcher.watch(file.path);
    size_t before = inotifyWatches();
    {
      auto paused = watch->pause(unwatched.fd.get());
      // No watch is left on the other file, and writes to the watched one still wake.
      EXPECT_EQ(inotifyWatches(), before);
      auto change = watch->nextChange();
      file.append("still watched\n");
      EXPECT_TRUE(file.resolves(change));
    }
    // The failed change is not tried again: even through the right descriptor, the watch is
    // never paused any more.
    auto paused = watch->pause(file.fd.get());
    auto change = watch->nextChange();
    file.append("still watched\n");
    EXPECT_TRUE(file.resolves(change));
  }

  // Through the descriptor of a file watched for another job: that job's watch is set back to
  // writes, and this one's was never changed.
  OtherFile watched(file.path, ".watched");
  auto watch = file.watcher.watch(file.path);
  auto otherWatch = file.watcher.watch(watched.path);
  auto paused = watch->pause(watched.fd.get());
  auto otherChange = otherWatch->nextChange();
  watched.append("line\n");
  EXPECT_TRUE(file.resolves(otherChange));
  auto change = watch->nextChange();
  file.append("line\n");
  EXPECT_TRUE(file.resolves(change));
}

}  // namespace
}  // namespace runner

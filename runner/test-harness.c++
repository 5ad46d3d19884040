#include "runner/test-harness.h"

#include <errno.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executors/local/local-executor.h"
#include "runner/credentials.h"

namespace runner::testing {

kj::Maybe<kj::String> cannotRunJobs() {
  if (geteuid() != 0) return kj::str("jobs switch to runner-jobs, which needs root");
  if (getpwnam("runner-jobs") == nullptr) {
    return kj::str("the runner-jobs user does not exist (scripts/install-deps creates it)");
  }
  return nullptr;
}

TempDir::TempDir() {
  // Not TEST_TMPDIR: Bazel puts it under root's private cache, where jobs cannot read; nor /tmp
  // or /var/tmp: jobs have private ones.
  mkdir("/var/lib/runner-tests", 0755);
  auto tmpl = kj::str("/var/lib/runner-tests/runner-test.XXXXXX");
  KJ_ASSERT(mkdtemp(tmpl.begin()) != nullptr, strerror(errno), tmpl);
  // Jobs run as runner-jobs and may need to read what tests put here.
  KJ_SYSCALL(chmod(tmpl.cStr(), 0755));
  dirPath = kj::mv(tmpl);
}

TempDir::~TempDir() noexcept(false) {
  auto fs = kj::newDiskFilesystem();
  auto parent =
      fs->getRoot().openSubdir(kj::Path::parse(dirPath.slice(1)).parent(), kj::WriteMode::MODIFY);
  parent->remove(kj::Path::parse(dirPath.slice(1)).basename());
}

Harness::Harness(TempDir& dir, kj::Maybe<std::pair<uint32_t, uint64_t>> retention,
                 uint64_t maxStoredBytes, size_t maxDiskBacklog)
    : io(kj::setupAsyncIo()),
      log(STDERR_FILENO),
      store(Store::open(kj::str(dir.path(), "/runner.db"))),
      watcher(io.unixEventPort) {
  auto logDir = kj::str(dir.path(), "/logs");
  if (mkdir(logDir.cStr(), 0750) < 0) KJ_ASSERT(errno == EEXIST);
  executorSet.add(kj::heap<executors::LocalExecutor>(io.unixEventPort, io.provider->getTimer()));
  JobTableConfig config;
  config.logDir = kj::mv(logDir);
  config.identities = newSharedIdentity(resolveRunAs("runner-jobs"));
  config.defaultExecutor = kj::str("local");
  config.defaultGrace = 1 * kj::SECONDS;
  KJ_IF_MAYBE (r, retention) {
    config.maxStoredPerUser = r->first;
    config.maxStoredBytesPerUser = r->second;
  }
  if (maxStoredBytes > 0) config.maxStoredBytes = maxStoredBytes;
  if (maxDiskBacklog > 0) config.maxDiskBacklog = maxDiskBacklog;
  table = kj::heap<JobTable>(kj::mv(config), executorSet, *store, io.provider->getTimer(), watcher,
                             log);
  table->load().wait(io.waitScope);
}

Harness::~Harness() noexcept(false) {
  // Jobs still running die with the test rather than outliving it.
  if (table.get() == nullptr) return;
  for (auto job : table->all()) {
    if (!job->hasEnded()) job->stop(0 * kj::SECONDS).wait(io.waitScope);
  }
}

Job& Harness::start(kj::ArrayPtr<const kj::StringPtr> argv, kj::StringPtr owner) {
  KJ_REQUIRE(argv.size() > 0);
  StartRequest request;
  request.command = kj::str(argv[0]);
  request.args = KJ_MAP(arg, argv.slice(1, argv.size())) {
    return kj::str(arg);
  };
  return *table->start(owner, kj::mv(request)).wait(io.waitScope);
}

Job& Harness::sh(kj::StringPtr script, kj::StringPtr owner) {
  kj::StringPtr argv[] = {"/bin/sh", "-c", script};
  return start(argv, owner);
}

void Harness::waitEnded(Job& job) {
  job.whenEnded().wait(io.waitScope);
}

kj::String Harness::output(Job& job) {
  auto fs = kj::newDiskFilesystem();
  return fs->getRoot().openFile(kj::Path::parse(job.outputPath().slice(1)))->readAllText();
}

}  // namespace runner::testing

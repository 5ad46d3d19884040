#include "tests/runctl-process.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

namespace runner::testing {

namespace {

kj::String runctlPath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  KJ_REQUIRE(srcdir != nullptr, "TEST_SRCDIR is not set: run this test through bazel");
  return kj::str(srcdir, "/runner/client/runctl");
}

kj::Array<kj::String> environmentFor(RunnerdFixture& fixture, const RunctlOptions& options) {
  kj::Vector<kj::String> env;
  env.add(kj::str("PATH=/usr/bin:/bin"));
  KJ_IF_MAYBE (address, options.server) {
    env.add(kj::str("RUNCTL_SERVER=", *address));
  } else {
    env.add(kj::str("RUNCTL_SERVER=", fixture.address()));
  }
  if (options.credentials) {
    env.add(kj::str("RUNCTL_CERT=", fixture.certPath(options.user)));
    env.add(kj::str("RUNCTL_KEY=", fixture.keyPath(options.user)));
    env.add(kj::str("RUNCTL_CA=", fixture.caPath()));
  }
  return env.releaseAsArray();
}

// The exit status as a shell shows it.
int shellStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  KJ_FAIL_ASSERT("runctl neither exited nor was killed", status);
}

}  // namespace

RunctlProcess::RunctlProcess(RunnerdFixture& fixture, kj::ArrayPtr<const kj::StringPtr> args,
                             const RunctlOptions& options) {
  // Everything the child needs is allocated here, before the fork.
  kj::Vector<kj::String> argv;
  argv.add(runctlPath());
  for (auto arg : args) argv.add(kj::str(arg));
  auto env = environmentFor(fixture, options);
  kj::Vector<const char*> rawArgv;
  for (auto& arg : argv) rawArgv.add(arg.cStr());
  rawArgv.add(nullptr);
  kj::Vector<const char*> rawEnv;
  for (auto& entry : env) rawEnv.add(entry.cStr());
  rawEnv.add(nullptr);

  // CLOEXEC, so that runctl processes started side by side do not hold each other's pipes open.
  int out[2], err[2];
  KJ_SYSCALL(pipe2(out, O_CLOEXEC));
  kj::AutoCloseFd outWrite(out[1]);
  outPipe = kj::AutoCloseFd(out[0]);
  KJ_SYSCALL(pipe2(err, O_CLOEXEC));
  kj::AutoCloseFd errWrite(err[1]);
  errPipe = kj::AutoCloseFd(err[0]);
  int devNull;
  KJ_SYSCALL(devNull = open("/dev/null", O_RDONLY | O_CLOEXEC));
  kj::AutoCloseFd input(devNull);

  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    KJ_DEFER(_exit(127));
    // The test's event loop may have blocked signals and ignored SIGPIPE; runctl must not
    // inherit either.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (dup2(input, STDIN_FILENO) < 0 || dup2(outWrite, STDOUT_FILENO) < 0 ||
        dup2(errWrite, STDERR_FILENO) < 0) {
      return;
    }
    execve(rawArgv[0], const_cast<char**>(rawArgv.begin()), const_cast<char**>(rawEnv.begin()));
  }
}

RunctlProcess::~RunctlProcess() noexcept(false) {
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

void RunctlProcess::signal(int number) {
  KJ_REQUIRE(pid > 0, "runctl has already been reaped");
  KJ_SYSCALL(kill(pid, number));
}

void RunctlProcess::closeStdout() {
  outPipe = nullptr;
  outOpen = false;
}

void RunctlProcess::readSome() {
  struct pollfd fds[2] = {{outOpen ? outPipe.get() : -1, POLLIN, 0},
                          {errOpen ? errPipe.get() : -1, POLLIN, 0}};
  KJ_SYSCALL(poll(fds, 2, -1));
  bool* open[2] = {&outOpen, &errOpen};
  std::string* texts[2] = {&outText, &errText};
  for (int i = 0; i < 2; i++) {
    if (fds[i].fd < 0 || fds[i].revents == 0) continue;
    char buffer[65536];
    ssize_t n;
    KJ_SYSCALL(n = read(fds[i].fd, buffer, sizeof(buffer)));
    if (n == 0) {
      *open[i] = false;
    } else {
      texts[i]->append(buffer, n);
    }
  }
}

void RunctlProcess::readStdoutUntil(kj::StringPtr marker) {
  while (outText.find(marker.cStr()) == std::string::npos) {
    KJ_ASSERT(outOpen, "stdout ended before the marker", marker, outText, errText);
    readSome();
  }
}

RunctlResult RunctlProcess::finish() {
  KJ_REQUIRE(pid > 0, "runctl has already been reaped");
  while (outOpen || errOpen) readSome();
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  pid = 0;
  return {shellStatus(status), kj::mv(outText), kj::mv(errText)};
}

RunctlResult runctl(RunnerdFixture& fixture, kj::ArrayPtr<const kj::StringPtr> args,
                    const RunctlOptions& options) {
  return RunctlProcess(fixture, args, options).finish();
}

}  // namespace runner::testing

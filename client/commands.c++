#include "client/commands.h"

#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <signal.h>
#include <unistd.h>

#include "client/error-message.h"
#include "client/exit-status.h"
#include "client/job-format.h"
#include "client/output-sink.h"
#include "client/terminal-text.h"

namespace runner {
namespace client {

namespace {

// What a writer into a closed pipe conventionally exits with (as if killed by SIGPIPE).
constexpr int EXIT_OUTPUT_CLOSED = EXIT_SIGNAL_BASE + SIGPIPE;

kj::Promise<int> failOnDisconnect(ServerConnection& connection) {
  return connection.onDisconnect().then([]() -> int {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "lost the connection to the server"));
  });
}

// Waits until the watch behind `ended` is over: returns EXIT_OUTPUT_CLOSED when stdout's reader
// went away, else hands the final JobInfo to `onEnd`.
kj::Promise<int> whenOutputEnds(kj::Promise<OutputEnd> ended,
                                kj::Function<int(api::JobInfo::Reader)> onEnd) {
  return ended.then([onEnd = kj::mv(onEnd)](OutputEnd end) mutable -> int {
    KJ_IF_MAYBE (info, end) {
      return onEnd((*info)->get());
    }
    return EXIT_OUTPUT_CLOSED;
  });
}

// For `run` and `wait`: the job's exit code, after saying on stderr why a job could not start.
int reportJobEnd(api::JobInfo::Reader info) {
  if (info.getState() == api::State::FAILED) {
    writeError(kj::str("job ", info.getId(), " could not start: ", info.getError()));
  } else if (info.getState() == api::State::LOST) {
    writeError(kj::str("job ", info.getId(), " was lost: ", info.getError()));
  }
  // An OOM kill need not end the job (a supervisor may survive its worker's), but it is never
  // silent.
  if (info.getOomKilled()) {
    writeError(kj::str("job ", info.getId(), ": the kernel's OOM killer killed ",
                       info.getOomKilledMain() ? "its main process" : "a process of the job",
                       " (memory limit ", info.getLimits().getMemoryBytes(), " bytes)"));
  }
  return jobExitCode(info);
}

kj::Promise<siginfo_t> onInterrupt(kj::UnixEventPort& port) {
  return port.onSignal(SIGINT).exclusiveJoin(port.onSignal(SIGTERM));
}

// The first SIGINT/SIGTERM stops `job` and streaming goes on; the second returns 128+N.
kj::Promise<int> stopOnInterrupt(kj::UnixEventPort& port, api::Job::Client job, kj::String id) {
  return onInterrupt(port).then([&port, job = kj::mv(job), id = kj::mv(id)](siginfo_t) mutable {
    writeError(kj::str("stopping job ", id, "; interrupt again to stop waiting for it"));
    auto stopping =
        job.stopRequest()
            .send()
            .then([](auto&&) {},
                  [](kj::Exception&& exception) {
                    writeError(kj::str("cannot stop the job: ", cleanErrorMessage(exception)));
                  })
            .eagerlyEvaluate(nullptr);
    return onInterrupt(port)
        .then([](siginfo_t signal) { return EXIT_SIGNAL_BASE + signal.si_signo; })
        .attach(kj::mv(stopping));
  });
}

}  // namespace

void writeStdout(kj::StringPtr text) {
  kj::FdOutputStream(STDOUT_FILENO).write(text.begin(), text.size());
}

void writeError(kj::StringPtr message) {
  auto line = kj::str("runctl: ", escapeForTerminal(message), "\n");
  kj::FdOutputStream(STDERR_FILENO).write(line.begin(), line.size());
}

int startJob(CommandIo& cmd, api::JobSpec::Reader spec, bool json) {
  auto request = cmd.connection.jobManager().startRequest();
  request.setSpec(spec);
  auto response = request.send().wait(cmd.io.waitScope);
  auto info = response.getInfo();
  writeStdout(json ? jobInfoJson(info) : kj::str(escapeForTerminal(info.getId()), "\n"));
  if (info.getState() == api::State::FAILED) {
    writeError(kj::str("job ", info.getId(), " could not start: ", info.getError()));
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

int runJob(CommandIo& cmd, api::JobSpec::Reader spec) {
  auto& waitScope = cmd.io.waitScope;
  auto startRequest = cmd.connection.jobManager().startRequest();
  startRequest.setSpec(spec);
  auto starting = startRequest.send();

  // Pipelined on the job that start() will return: start and watch are one round trip.
  auto job = starting.getJob();
  auto output = watchIntoFd(STDOUT_FILENO);
  auto watchRequest = job.watchOutputRequest();
  watchRequest.setSink(kj::mv(output.sink));
  watchRequest.setFromOffset(0);
  watchRequest.setFollow(true);
  auto watching = watchRequest.send();

  // When start() fails (an invalid spec), the watch fails with a copy of its error: report the
  // original.
  auto id = kj::str(starting.wait(waitScope).getInfo().getId());
  auto subscription = watching.wait(waitScope).getHandle();

  // Nobody reads the output any more (`runctl run -- yes | head -1`): the job stops as on Ctrl-C,
  // quietly, and runctl exits as a writer into a closed pipe does.
  auto ended =
      whenOutputEnds(kj::mv(output.ended), reportJobEnd)
          .then([job](int code) mutable -> kj::Promise<int> {
            if (code != EXIT_OUTPUT_CLOSED) return code;
            return job.stopRequest().send().then(
                [](auto&&) { return EXIT_OUTPUT_CLOSED; },
                [](kj::Exception&& exception) {
                  writeError(kj::str("cannot stop the job: ", cleanErrorMessage(exception)));
                  return EXIT_OUTPUT_CLOSED;
                });
          });
  return ended.exclusiveJoin(failOnDisconnect(cmd.connection))
      .exclusiveJoin(stopOnInterrupt(cmd.io.unixEventPort, kj::mv(job), kj::mv(id)))
      .wait(waitScope);
}

int showLogs(CommandIo& cmd, kj::StringPtr id, bool follow) {
  auto getRequest = cmd.connection.jobManager().getRequest();
  getRequest.setId(id);
  auto output = watchIntoFd(STDOUT_FILENO);
  auto job = getRequest.send().getJob();
  auto watchRequest = job.watchOutputRequest();
  watchRequest.setSink(kj::mv(output.sink));
  watchRequest.setFromOffset(0);
  watchRequest.setFollow(follow);
  auto subscription = watchRequest.send().wait(cmd.io.waitScope).getHandle();

  return whenOutputEnds(kj::mv(output.ended), [](api::JobInfo::Reader) { return EXIT_OK; })
      .catch_([job](kj::Exception&& e) mutable -> kj::Promise<int> {
        // The server let go of the output early: when the job was removed meanwhile, its answer
        // says so, which tells more than that the output ended.
        return job.infoRequest().send().then(
            [e = kj::mv(e)](auto&&) mutable -> int { kj::throwFatalException(kj::mv(e)); });
      })
      .exclusiveJoin(failOnDisconnect(cmd.connection))
      .wait(cmd.io.waitScope);
}

int showStatus(CommandIo& cmd, kj::StringPtr id, bool json) {
  auto getRequest = cmd.connection.jobManager().getRequest();
  getRequest.setId(id);
  auto response = getRequest.send().getJob().infoRequest().send().wait(cmd.io.waitScope);
  auto info = response.getInfo();
  writeStdout(json ? jobInfoJson(info) : formatStatus(info));
  return EXIT_OK;
}

int waitJob(CommandIo& cmd, kj::StringPtr id, bool json) {
  auto getRequest = cmd.connection.jobManager().getRequest();
  getRequest.setId(id);
  auto response = getRequest.send().getJob().waitRequest().send().wait(cmd.io.waitScope);
  auto info = response.getInfo();
  if (json) writeStdout(jobInfoJson(info));
  return reportJobEnd(info);
}

int stopJob(CommandIo& cmd, kj::StringPtr id, uint32_t graceMillis) {
  auto getRequest = cmd.connection.jobManager().getRequest();
  getRequest.setId(id);
  auto stopRequest = getRequest.send().getJob().stopRequest();
  stopRequest.setGraceMillis(graceMillis);
  auto response = stopRequest.send().wait(cmd.io.waitScope);
  auto info = response.getInfo();
  writeStdout(kj::str(escapeForTerminal(info.getId()), " ", describeOutcome(info), "\n"));
  return EXIT_OK;
}

int signalJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, int signal) {
  // Pipelined a window at a time, as removeJobs() does.
  constexpr size_t WINDOW = 64;
  int status = EXIT_OK;
  for (size_t first = 0; first < ids.size(); first += WINDOW) {
    auto window = ids.slice(first, kj::min(ids.size(), first + WINDOW));
    kj::Vector<kj::Promise<void>> signals(window.size());
    for (auto id : window) {
      auto getRequest = cmd.connection.jobManager().getRequest();
      getRequest.setId(id);
      auto signalRequest = getRequest.send().getJob().signalRequest();
      signalRequest.setSignal(signal);
      signals.add(signalRequest.send().ignoreResult());
    }
    for (auto i : kj::indices(window)) {
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { signals[i].wait(cmd.io.waitScope); })) {
        if (e->getType() == kj::Exception::Type::DISCONNECTED) kj::throwFatalException(kj::mv(*e));
        writeError(cleanErrorMessage(*e));
        status = EXIT_FAILED;
      } else {
        writeStdout(kj::str(escapeForTerminal(window[i]), "\n"));
      }
    }
  }
  return status;
}

int removeJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, bool force,
               uint32_t graceMillis) {
  // Pipelined a window at a time (get and remove in one round trip each), answers in order: the
  // server bounds the job capabilities a connection holds at once.
  constexpr size_t WINDOW = 64;
  int status = EXIT_OK;
  for (size_t first = 0; first < ids.size(); first += WINDOW) {
    auto window = ids.slice(first, kj::min(ids.size(), first + WINDOW));
    kj::Vector<kj::Promise<void>> removals(window.size());
    for (auto id : window) {
      auto getRequest = cmd.connection.jobManager().getRequest();
      getRequest.setId(id);
      auto removeRequest = getRequest.send().getJob().removeRequest();
      removeRequest.setForce(force);
      removeRequest.setGraceMillis(graceMillis);
      removals.add(removeRequest.send().ignoreResult());
    }
    for (auto i : kj::indices(window)) {
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { removals[i].wait(cmd.io.waitScope); })) {
        if (e->getType() == kj::Exception::Type::DISCONNECTED) kj::throwFatalException(kj::mv(*e));
        writeError(cleanErrorMessage(*e));
        status = EXIT_FAILED;
      } else {
        writeStdout(kj::str(escapeForTerminal(window[i]), "\n"));
      }
    }
  }
  return status;
}

int pruneJobs(CommandIo& cmd, uint64_t olderThanMillis, bool allUsers) {
  auto request = cmd.connection.jobManager().pruneRequest();
  request.setOlderThanMillis(olderThanMillis);
  request.setAllUsers(allUsers);
  auto response = request.send().wait(cmd.io.waitScope);
  auto removed = response.getRemoved();
  writeStdout(kj::str("removed ", removed, removed == 1 ? " job" : " jobs", ", freed ",
                      formatSize(response.getBytes()), "\n"));
  return EXIT_OK;
}

int listJobs(CommandIo& cmd, bool allUsers, bool json) {
  // The server answers a page at a time; the pages are gathered into one list.
  kj::Vector<capnp::Response<api::JobManager::ListResults>> pages;
  size_t count = 0;
  kj::String after;
  for (;;) {
    auto request = cmd.connection.jobManager().listRequest();
    auto filter = request.initFilter();
    filter.setAllUsers(allUsers);
    filter.setAfter(after);
    auto page = request.send().wait(cmd.io.waitScope);
    count += page.getJobs().size();
    after = kj::str(page.getNext());
    pages.add(kj::mv(page));
    if (after.size() == 0) break;
  }
  capnp::MallocMessageBuilder message;
  auto jobs = message.initRoot<api::JobManager::ListResults>().initJobs(count);
  size_t i = 0;
  for (auto& page : pages) {
    for (auto info : page.getJobs()) jobs.setWithCaveats(i++, info);
  }
  auto all = jobs.asReader();
  writeStdout(json ? jobListJson(all) : formatJobTable(all));
  return EXIT_OK;
}

}  // namespace client
}  // namespace runner

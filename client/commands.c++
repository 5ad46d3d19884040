#include "client/commands.h"

#include <capnp/compat/json.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <signal.h>
#include <unistd.h>

#include "client/error-message.h"
#include "client/exit-status.h"
#include "client/job-format.h"
#include "client/log-view.h"
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
  } else if (info.getState() == api::State::STOPPED &&
             (info.getEndReason() == api::EndReason::TIMEOUT ||
              info.getEndReason() == api::EndReason::IDLE_TIMEOUT ||
              info.getEndReason() == api::EndReason::OUTPUT_LIMIT)) {
    // runnerd stopped it, not the user: `run --timeout 2s` says why it exits 143.
    writeError(kj::str("job ", info.getId(), ": ", info.getError()));
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
    auto stopping = job.stopRequest()
                        .send()
                        .then([](auto&&) {},
                              [](kj::Exception&& exception) {
                                writeError(kj::str("cannot stop the job: ", errorLine(exception)));
                              })
                        .eagerlyEvaluate(nullptr);
    return onInterrupt(port)
        .then([](siginfo_t signal) { return EXIT_SIGNAL_BASE + signal.si_signo; })
        .attach(kj::mv(stopping));
  });
}

// Asks `send` about each job (pipelined on get(), one round trip each, a window at a time: the
// server bounds the job capabilities a connection holds at once) and hands the answers to
// `onAnswer` in the order of `ids`. A job whose call fails gets one error line, and its code is
// `failureCode`. Returns the first non-zero code in the order of `ids`, else 0. A lost connection
// ends it all.
template <typename Send, typename OnAnswer>
int forEachJob(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, int failureCode, Send send,
               OnAnswer onAnswer) {
  using Answer = decltype(send(kj::instance<api::Job::Client>()).wait(cmd.io.waitScope));
  constexpr size_t WINDOW = 64;
  int status = EXIT_OK;
  for (size_t first = 0; first < ids.size(); first += WINDOW) {
    auto window = ids.slice(first, kj::min(ids.size(), first + WINDOW));
    kj::Vector<kj::Promise<Answer>> answers(window.size());
    for (auto id : window) {
      auto getRequest = cmd.connection.jobManager().getRequest();
      getRequest.setId(id);
      answers.add(send(getRequest.send().getJob()));
    }
    for (auto& answer : answers) {
      int code = EXIT_OK;
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                     auto response = answer.wait(cmd.io.waitScope);
                     code = onAnswer(response);
                   })) {
        if (e->getType() == kj::Exception::Type::DISCONNECTED) kj::throwFatalException(kj::mv(*e));
        writeError(errorLine(*e));
        code = failureCode;
      }
      if (status == EXIT_OK) status = code;
    }
  }
  return status;
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
                  writeError(kj::str("cannot stop the job: ", errorLine(exception)));
                  return EXIT_OUTPUT_CLOSED;
                });
          });
  return ended.exclusiveJoin(failOnDisconnect(cmd.connection))
      .exclusiveJoin(stopOnInterrupt(cmd.io.unixEventPort, kj::mv(job), kj::mv(id)))
      .wait(waitScope);
}

int showLogs(CommandIo& cmd, kj::StringPtr id, const LogsOptions& options) {
  auto getRequest = cmd.connection.jobManager().getRequest();
  getRequest.setId(id);
  auto job = getRequest.send().getJob();
  if (options.selectsLines()) return showLogLines(cmd, kj::mv(job), options);
  bool follow = options.follow;
  auto output = watchIntoFd(STDOUT_FILENO);
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

int showStatus(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, bool json) {
  bool first = true;
  return forEachJob(
      cmd, ids, EXIT_FAILED, [](api::Job::Client job) { return job.infoRequest().send(); },
      [&](auto& response) {
        auto info = response.getInfo();
        if (json) {
          writeStdout(jobInfoJson(info));
        } else {
          writeStdout(first ? formatStatus(info) : kj::str("\n", formatStatus(info)));
        }
        first = false;
        return EXIT_OK;
      });
}

int waitJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, bool json) {
  return forEachJob(
      cmd, ids, EXIT_RUNCTL_FAILED, [](api::Job::Client job) { return job.waitRequest().send(); },
      [&](auto& response) {
        auto info = response.getInfo();
        if (json) writeStdout(jobInfoJson(info));
        return reportJobEnd(info);
      });
}

int stopJobs(CommandIo& cmd, kj::ArrayPtr<const kj::StringPtr> ids, uint32_t graceMillis) {
  return forEachJob(
      cmd, ids, EXIT_FAILED,
      [graceMillis](api::Job::Client job) {
        auto request = job.stopRequest();
        request.setGraceMillis(graceMillis);
        return request.send();
      },
      [](auto& response) {
        auto info = response.getInfo();
        writeStdout(kj::str(escapeForTerminal(info.getId()), " ", describeOutcome(info), "\n"));
        return EXIT_OK;
      });
}

int showIdentity(CommandIo& cmd, bool json) {
  auto response = cmd.connection.jobManager().whoamiRequest().send().wait(cmd.io.waitScope);
  if (json) {
    writeStdout(kj::str(capnp::JsonCodec().encode(response), "\n"));
  } else {
    writeStdout(
        kj::str(escapeForTerminal(response.getUser()), response.getAdmin() ? " (admin)\n" : "\n"));
  }
  return EXIT_OK;
}

int printJobIds(CommandIo& cmd) {
  kj::String after;
  kj::Vector<kj::String> lines;
  do {
    auto request = cmd.connection.jobManager().listRequest();
    request.initFilter().setAfter(after);
    auto page = request.send().wait(cmd.io.waitScope);
    for (auto info : page.getJobs()) {
      lines.add(kj::str(info.getId(), "\n"));
      if (info.getName().size() > 0) lines.add(kj::str(info.getName(), "\n"));
    }
    after = kj::str(page.getNext());
  } while (after.size() > 0);
  writeStdout(kj::strArray(lines, ""));
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
        writeError(errorLine(*e));
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
        writeError(errorLine(*e));
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

int listJobs(CommandIo& cmd, const ListOptions& options) {
  // The server answers a page at a time; the pages are gathered into one list.
  kj::Vector<capnp::Response<api::JobManager::ListResults>> pages;
  size_t count = 0;
  kj::String after;
  for (;;) {
    auto request = cmd.connection.jobManager().listRequest();
    auto filter = request.initFilter();
    filter.setAllUsers(options.allUsers);
    filter.setAfter(after);
    auto states = filter.initStates(options.states.size());
    for (auto i : kj::indices(options.states)) states.set(i, options.states[i]);
    filter.setName(options.name);
    auto labels = filter.initLabels(options.labels.size());
    for (auto i : kj::indices(options.labels)) {
      auto& label = options.labels[i];
      size_t equals = KJ_ASSERT_NONNULL(label.findFirst('='));
      labels[i].setKey(kj::heapString(label.slice(0, equals)));
      labels[i].setValue(label.slice(equals + 1));
    }
    filter.setLimit(options.limit);
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
  if (options.quiet) {
    kj::Vector<kj::String> lines(all.size());
    for (auto info : all) lines.add(kj::str(escapeForTerminal(info.getId()), "\n"));
    writeStdout(kj::strArray(lines, ""));
  } else {
    writeStdout(options.json ? jobListJson(all) : formatJobTable(all));
  }
  return EXIT_OK;
}

}  // namespace client
}  // namespace runner

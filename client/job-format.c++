#include "client/job-format.h"

#include <capnp/compat/json.h>
#include <kj/vector.h>
#include <string.h>
#include <time.h>

#include "client/terminal-text.h"

namespace runner {
namespace client {

namespace {

kj::StringPtr stateName(api::State state) {
  switch (state) {
    case api::State::RUNNING:
      return "running";
    case api::State::EXITED:
      return "exited";
    case api::State::KILLED:
      return "killed";
    case api::State::STOPPED:
      return "stopped";
    case api::State::FAILED:
      return "failed";
    case api::State::LOST:
      return "lost";
  }
  return "unknown";
}

// The EXIT column of `list`: the code, or the signal, or nothing yet.
kj::String exitColumn(api::JobInfo::Reader info) {
  switch (info.getState()) {
    case api::State::EXITED:
      return kj::str(info.getExitCode());
    case api::State::KILLED:
    case api::State::STOPPED:
      if (info.getTermSignal() > 0) return signalName(info.getTermSignal());
      return kj::str(info.getExitCode());
    case api::State::RUNNING:
    case api::State::FAILED:
    case api::State::LOST:
      break;
  }
  return kj::str("-");
}

// The LABELS column of `list`: k=v,k2=v2, escaped, cut to LABELS_COLUMN_CHARS characters with
// "..." when longer (`status` shows them all).
constexpr size_t LABELS_COLUMN_CHARS = 40;

kj::String labelsColumn(capnp::List<api::Label>::Reader labels) {
  if (labels.size() == 0) return kj::str("-");
  kj::Vector<kj::String> pairs(labels.size());
  for (auto label : labels) pairs.add(kj::str(label.getKey(), "=", label.getValue()));
  auto text = escapeForTerminal(kj::strArray(pairs, ","));
  if (characterCount(text) <= LABELS_COLUMN_CHARS) return text;
  // Cut at a character boundary (escaped text is UTF-8).
  size_t end = 0, characters = 0;
  while (end < text.size() && characters < LABELS_COLUMN_CHARS - 3) {
    ++end;
    while (end < text.size() && (uint8_t(text[end]) & 0xc0) == 0x80) ++end;
    ++characters;
  }
  return kj::str(text.slice(0, end), "...");
}

bool needsQuoting(kj::StringPtr word) {
  if (word.size() == 0) return true;
  for (char c : word) {
    bool plain = ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
                 strchr("-_./:=+,@%", c) != nullptr;
    if (!plain) return true;
  }
  return false;
}

kj::String shellQuote(kj::StringPtr word) {
  if (!needsQuoting(word)) return kj::str(word);
  if (needsEscapes(word)) {
    // bash's $'...' reads back the terminal escapes, and \' for a quote.
    auto escaped = escapeForTerminal(word);
    kj::Vector<char> quoted(escaped.size() + 4);
    quoted.addAll("$'"_kj);
    for (char c : escaped) {
      if (c == '\'') quoted.add('\\');
      quoted.add(c);
    }
    quoted.add('\'');
    quoted.add('\0');
    return kj::String(quoted.releaseAsArray());
  }
  kj::Vector<char> quoted(word.size() + 3);
  quoted.add('\'');
  for (char c : word) {
    if (c == '\'') {
      quoted.addAll("'\\''"_kj);
    } else {
      quoted.add(c);
    }
  }
  quoted.add('\'');
  quoted.add('\0');
  return kj::String(quoted.releaseAsArray());
}

kj::String formatLimits(api::Limits::Reader limits) {
  kj::Vector<kj::String> parts;
  if (limits.getCpuMillicores() > 0) {
    parts.add(kj::str("cpu ", formatCores(limits.getCpuMillicores()), " cores"));
  }
  if (limits.getMemoryBytes() > 0) {
    parts.add(kj::str("memory ", formatSize(limits.getMemoryBytes())));
  }
  if (limits.getIoReadBytesPerSec() > 0) {
    parts.add(kj::str("io read ", formatSize(limits.getIoReadBytesPerSec()), "/s"));
  }
  if (limits.getIoWriteBytesPerSec() > 0) {
    parts.add(kj::str("io write ", formatSize(limits.getIoWriteBytesPerSec()), "/s"));
  }
  if (limits.getPids() > 0) parts.add(kj::str("pids ", limits.getPids()));
  if (parts.size() == 0) return kj::str("none");
  return kj::strArray(parts, ", ");
}

kj::String formatIsolation(api::Isolation::Reader isolation) {
  kj::Vector<kj::StringPtr> parts;
  if (isolation.getPid()) parts.add("pid");
  if (isolation.getMount()) parts.add("mount");
  if (isolation.getNet()) parts.add("net");
  if (parts.size() == 0) return kj::str("none");
  return kj::str(kj::strArray(parts, ", "), " namespaces");
}

kj::String formatCgroup(api::CgroupInfo::Reader cgroup) {
  if (cgroup.getVersion() == 0) return kj::str("none");
  auto text = kj::str("v", cgroup.getVersion(), " ", escapeForTerminal(cgroup.getPath()));
  if (cgroup.getIoDevice().size() > 0) {
    return kj::str(text, ", io limits on ", escapeForTerminal(cgroup.getIoDevice()));
  }
  return text;
}

// "Label:" padded so that every value starts in the same column.
void addLine(kj::Vector<kj::String>& lines, kj::StringPtr label, kj::StringPtr value) {
  constexpr size_t LABEL_WIDTH = 14;
  auto padding = kj::repeat(' ', LABEL_WIDTH - kj::min(LABEL_WIDTH - 1, label.size() + 1));
  lines.add(kj::str(label, ":", padding, value));
}

// JSON numbers for 64-bit integers (JsonCodec writes them as strings so that JavaScript loses no
// digits; runner's counts stay below 2^53).
class UInt64AsNumber final : public capnp::JsonCodec::Handler<uint64_t> {
 public:
  void encode(const capnp::JsonCodec&, uint64_t input,
              capnp::JsonValue::Builder output) const override {
    output.setNumber(static_cast<double>(input));
  }
  uint64_t decode(const capnp::JsonCodec&, capnp::JsonValue::Reader input) const override {
    return input.isString() ? input.getString().parseAs<uint64_t>()
                            : static_cast<uint64_t>(input.getNumber());
  }
};

class Int64AsNumber final : public capnp::JsonCodec::Handler<int64_t> {
 public:
  void encode(const capnp::JsonCodec&, int64_t input,
              capnp::JsonValue::Builder output) const override {
    output.setNumber(static_cast<double>(input));
  }
  int64_t decode(const capnp::JsonCodec&, capnp::JsonValue::Reader input) const override {
    return input.isString() ? input.getString().parseAs<int64_t>()
                            : static_cast<int64_t>(input.getNumber());
  }
};

constexpr kj::StringPtr MILLIS_SUFFIX = "Millis"_kj;

// A time of JobInfo's: an Int64 named *At, Unix milliseconds.
bool isTime(capnp::StructSchema::Field field) {
  return field.getType().which() == capnp::schema::Type::INT64 &&
         field.getProto().getName().endsWith("At");
}

// JobInfo as JsonCodec writes a struct, but each time twice: RFC 3339 (null when unset) and Unix
// milliseconds under "<name>Millis". Reading takes the milliseconds and ignores the text.
class JobInfoJson final : public capnp::JsonCodec::Handler<api::JobInfo> {
 public:
  void encode(const capnp::JsonCodec& codec, api::JobInfo::Reader info,
              capnp::JsonValue::Builder output) const override {
    capnp::DynamicStruct::Reader input = info;
    auto fields = input.getSchema().getNonUnionFields();
    size_t count = 0;
    for (auto field : fields) count += isTime(field) ? 2 : 1;
    auto object = output.initObject(count);
    size_t pos = 0;
    for (auto field : fields) {
      auto name = field.getProto().getName();
      auto value = input.get(field);
      if (isTime(field)) {
        auto millis = value.as<int64_t>();
        auto text = object[pos++];
        text.setName(name);
        KJ_IF_MAYBE (formatted, millis == 0 ? nullptr : formatRfc3339(millis)) {
          text.initValue().setString(*formatted);
        } else {
          text.initValue().setNull();
        }
        auto number = object[pos++];
        number.setName(kj::str(name, MILLIS_SUFFIX));
        codec.encode(value, field.getType(), number.initValue());
      } else {
        auto out = object[pos++];
        out.setName(name);
        codec.encode(value, field.getType(), out.initValue());
      }
    }
  }

  void decode(const capnp::JsonCodec& codec, capnp::JsonValue::Reader input,
              api::JobInfo::Builder info) const override {
    capnp::DynamicStruct::Builder output = info;
    auto schema = output.getSchema();
    for (auto member : input.getObject()) {
      auto name = member.getName();
      // A time is read from its milliseconds; its text, and what this schema lacks, are skipped.
      bool millis = name.endsWith(MILLIS_SUFFIX);
      auto fieldName = millis ? kj::heapString(name.slice(0, name.size() - MILLIS_SUFFIX.size()))
                              : kj::str(name);
      KJ_IF_MAYBE (field, schema.findFieldByName(fieldName)) {
        if (isTime(*field) != millis) continue;
        output.adopt(*field, codec.decode(member.getValue(), field->getType(),
                                          capnp::Orphanage::getForMessageContaining(info)));
      }
    }
  }
};

// A JsonCodec with the handlers above.
class JobJsonCodec final : public capnp::JsonCodec {
 public:
  JobJsonCodec() {
    addTypeHandler(uint64s);
    addTypeHandler(int64s);
    addTypeHandler(jobs);
  }

 private:
  UInt64AsNumber uint64s;
  Int64AsNumber int64s;
  JobInfoJson jobs;
};
// Why runnerd ended the job, for the status line "Ended by"; nullptr for no reason.
kj::Maybe<kj::String> describeEndReason(api::JobInfo::Reader info) {
  switch (info.getEndReason()) {
    case api::EndReason::NONE:
      return nullptr;
    case api::EndReason::STOPPED:
      return kj::str("stop");
    case api::EndReason::TIMEOUT:
      return kj::str("timeout (", formatMillis(info.getTimeoutMillis()), ")");
    case api::EndReason::IDLE_TIMEOUT:
      return kj::str("idle timeout (no output for ", formatMillis(info.getIdleTimeoutMillis()),
                     ")");
    case api::EndReason::OUTPUT_LIMIT:
      return kj::str("output limit");
  }
  // A reason a newer server knows.
  return kj::str("reason ", static_cast<unsigned>(info.getEndReason()));
}

// The suffix of a stopped job's outcome that says which limit stopped it.
kj::StringPtr limitSuffix(api::EndReason reason) {
  switch (reason) {
    case api::EndReason::TIMEOUT:
      return " (timeout)";
    case api::EndReason::IDLE_TIMEOUT:
      return " (idle timeout)";
    case api::EndReason::OUTPUT_LIMIT:
      return " (output limit)";
    default:
      return "";
  }
}

}  // namespace

kj::String signalName(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  if (abbreviation == nullptr) return kj::str("signal ", signal);
  return kj::str("SIG", abbreviation);
}

kj::String describeOutcome(api::JobInfo::Reader info) {
  switch (info.getState()) {
    case api::State::RUNNING:
      return kj::str("running");
    case api::State::EXITED:
      return kj::str("exited with code ", info.getExitCode());
    case api::State::KILLED:
      return kj::str("killed by ", signalName(info.getTermSignal()),
                     info.getOomKilledMain() ? " (out of memory)" : "");
    case api::State::STOPPED:
      if (info.getTermSignal() > 0) {
        return kj::str("stopped by ", signalName(info.getTermSignal()),
                       limitSuffix(info.getEndReason()));
      }
      return kj::str("stopped (exited with code ", info.getExitCode(), ")",
                     limitSuffix(info.getEndReason()));
    case api::State::FAILED:
      return kj::str("failed: ", escapeForTerminal(info.getError()));
    case api::State::LOST:
      return kj::str("lost: ", escapeForTerminal(info.getError()));
  }
  return kj::str(stateName(info.getState()));
}

kj::String formatStatus(api::JobInfo::Reader info) {
  kj::Vector<kj::String> lines;
  addLine(lines, "ID", escapeForTerminal(info.getId()));
  addLine(lines, "Owner", escapeForTerminal(info.getOwner()));
  if (info.getName().size() > 0) addLine(lines, "Name", escapeForTerminal(info.getName()));
  if (info.getLabels().size() > 0) {
    kj::Vector<kj::String> pairs(info.getLabels().size());
    for (auto label : info.getLabels()) {
      pairs.add(escapeForTerminal(kj::str(label.getKey(), "=", label.getValue())));
    }
    addLine(lines, "Labels", kj::strArray(pairs, ", "));
  }
  addLine(lines, "State", stateName(info.getState()));
  switch (info.getState()) {
    case api::State::EXITED:
      addLine(lines, "Exit code", kj::str(info.getExitCode()));
      break;
    case api::State::KILLED:
    case api::State::STOPPED:
      if (info.getTermSignal() > 0) {
        addLine(lines, "Signal",
                kj::str(signalName(info.getTermSignal()), " (", info.getTermSignal(), ")"));
      } else {
        addLine(lines, "Exit code", kj::str(info.getExitCode()));
      }
      break;
    case api::State::RUNNING:
    case api::State::FAILED:
    case api::State::LOST:
      break;
  }
  KJ_IF_MAYBE (reason, describeEndReason(info)) {
    addLine(lines, "Ended by", *reason);
  }
  if (info.getError().size() > 0) addLine(lines, "Error", escapeForTerminal(info.getError()));
  addLine(lines, "Command", formatCommandLine(info.getCommand(), info.getArgs()));
  if (info.getWorkingDir().size() > 0) {
    addLine(lines, "Working dir", escapeForTerminal(info.getWorkingDir()));
  }
  addLine(lines, "Created", formatTime(info.getCreatedAt()));
  addLine(lines, "Started", formatTime(info.getStartedAt()));
  if (info.getEndedAt() > 0 && info.getStartedAt() > 0 &&
      info.getEndedAt() >= info.getStartedAt()) {
    addLine(lines, "Ended",
            kj::str(formatTime(info.getEndedAt()), " (ran ",
                    formatMillis(info.getEndedAt() - info.getStartedAt()), ")"));
  } else {
    addLine(lines, "Ended", formatTime(info.getEndedAt()));
  }
  addLine(lines, "User", info.getUid() == 0 ? kj::str("-")
                                            : kj::str("uid ", info.getUid(), ", gid ", info.getGid()));
  addLine(lines, "Executor",
          info.getExecutor().size() > 0 ? escapeForTerminal(info.getExecutor()) : kj::str("-"));
  addLine(lines, "Limits", formatLimits(info.getLimits()));
  if (info.getTimeoutMillis() > 0 || info.getIdleTimeoutMillis() > 0) {
    kj::Vector<kj::String> timeouts;
    if (info.getTimeoutMillis() > 0)
      timeouts.add(kj::str("run ", formatMillis(info.getTimeoutMillis())));
    if (info.getIdleTimeoutMillis() > 0) {
      timeouts.add(kj::str("idle ", formatMillis(info.getIdleTimeoutMillis())));
    }
    addLine(lines, "Timeouts", kj::strArray(timeouts, ", "));
  }
  addLine(lines, "Isolation", formatIsolation(info.getIsolation()));
  addLine(lines, "Cgroup", formatCgroup(info.getCgroup()));
  auto usage = info.getUsage();
  addLine(lines, "CPU time",
          kj::str("user ", formatMillis(usage.getCpuUserMicros() / 1000), ", system ",
                  formatMillis(usage.getCpuSystemMicros() / 1000)));
  addLine(lines, "Peak memory",
          usage.getPeakMemoryBytes() == 0 ? kj::str("-") : formatSize(usage.getPeakMemoryBytes()));
  if (info.getState() == api::State::RUNNING) {
    addLine(lines, "Memory now",
            usage.getCurrentMemoryBytes() == 0 ? kj::str("-")
                                               : formatSize(usage.getCurrentMemoryBytes()));
  }
  addLine(lines, "Output",
          info.getMaxOutputBytes() == 0
              ? kj::str(info.getOutputBytes(), " bytes")
              : kj::str(info.getOutputBytes(), " bytes (limit ", formatSize(info.getMaxOutputBytes()),
                        ")"));
  addLine(lines, "OOM killed",
          !info.getOomKilled()      ? "no"
          : info.getOomKilledMain() ? "yes, the main process"
                                    : "yes, another process of the job");
  return kj::str(kj::strArray(lines, "\n"), "\n");
}

kj::String formatJobTable(capnp::List<api::JobInfo>::Reader jobs) {
  // NAME and LABELS only when a listed job has them: a table of unnamed jobs stays as it was.
  bool names = false, labels = false;
  for (auto job : jobs) {
    names = names || job.getName().size() > 0;
    labels = labels || job.getLabels().size() > 0;
  }
  constexpr size_t MAX_COLUMNS = 8;
  const size_t COLUMNS = 6 + names + labels;
  kj::Vector<kj::Array<kj::String>> rows(jobs.size() + 1);
  auto addRow = [&](kj::String id, kj::String owner, kj::String state, kj::String exit,
                    kj::String created, kj::String name, kj::String tags, kj::String command) {
    auto row = kj::heapArrayBuilder<kj::String>(COLUMNS);
    row.add(kj::mv(id));
    row.add(kj::mv(owner));
    row.add(kj::mv(state));
    row.add(kj::mv(exit));
    row.add(kj::mv(created));
    if (names) row.add(kj::mv(name));
    if (labels) row.add(kj::mv(tags));
    row.add(kj::mv(command));
    rows.add(row.finish());
  };
  addRow(kj::str("ID"), kj::str("OWNER"), kj::str("STATE"), kj::str("EXIT"), kj::str("CREATED"),
         kj::str("NAME"), kj::str("LABELS"), kj::str("COMMAND"));
  for (auto job : jobs) {
    addRow(escapeForTerminal(job.getId()), escapeForTerminal(job.getOwner()),
           kj::str(stateName(job.getState())), exitColumn(job), formatTime(job.getCreatedAt()),
           job.getName().size() > 0 ? escapeForTerminal(job.getName()) : kj::str("-"),
           labelsColumn(job.getLabels()), formatCommandLine(job.getCommand(), job.getArgs()));
  }

  // Every cell is escaped already, so each character takes one column (but for double-width and
  // combining characters, which runctl does not measure).
  size_t widths[MAX_COLUMNS] = {};
  for (auto& row : rows) {
    for (size_t i = 0; i < COLUMNS; i++) widths[i] = kj::max(widths[i], characterCount(row[i]));
  }

  kj::Vector<kj::String> lines(rows.size());
  for (auto& row : rows) {
    kj::Vector<kj::String> cells(COLUMNS);
    for (size_t i = 0; i + 1 < COLUMNS; i++) {
      cells.add(kj::str(row[i], kj::repeat(' ', widths[i] - characterCount(row[i]))));
    }
    // The last column is not padded: no trailing blanks.
    cells.add(kj::str(row[COLUMNS - 1]));
    lines.add(kj::strArray(cells, "  "));
  }
  return kj::str(kj::strArray(lines, "\n"), "\n");
}

kj::String jobInfoJson(api::JobInfo::Reader info) {
  JobJsonCodec codec;
  return kj::str(codec.encode(info), "\n");
}

kj::String jobListJson(capnp::List<api::JobInfo>::Reader jobs) {
  JobJsonCodec codec;
  return kj::str(codec.encode(jobs), "\n");
}

void decodeJobInfoJson(kj::ArrayPtr<const char> json, api::JobInfo::Builder info) {
  JobJsonCodec codec;
  codec.decode(json, info);
}

kj::Maybe<kj::String> formatRfc3339(int64_t unixMillis) {
  // Years 0000 to 9999: from -62167219200000 (0000-01-01) to 253402300799999 (9999-12-31).
  constexpr int64_t FIRST = -62167219200000;
  constexpr int64_t LAST = 253402300799999;
  if (unixMillis < FIRST || unixMillis > LAST) return nullptr;
  // Floor division, so that a time before 1970 keeps its milliseconds positive.
  int64_t millis = ((unixMillis % 1000) + 1000) % 1000;
  time_t seconds = (unixMillis - millis) / 1000;
  struct tm utc;
  char buffer[32];
  if (gmtime_r(&seconds, &utc) == nullptr ||
      strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &utc) == 0) {
    return nullptr;
  }
  auto threeDigits = kj::str(millis < 100 ? "0" : "", millis < 10 ? "0" : "", millis);
  // strftime writes year 0 to 999 with fewer than four digits.
  auto year = utc.tm_year + 1900;
  auto yearPadding = kj::repeat('0', year < 10 ? 3 : year < 100 ? 2 : year < 1000 ? 1 : 0);
  return kj::str(yearPadding, buffer, ".", threeDigits, "Z");
}

kj::String formatSize(uint64_t bytes) {
  static constexpr const char* UNITS[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  size_t unit = 0;
  uint64_t scale = 1;
  while (unit + 1 < kj::size(UNITS) && bytes / scale >= 1024) {
    scale <<= 10;
    ++unit;
  }
  if (bytes % scale == 0) return kj::str(bytes / scale, " ", UNITS[unit]);
  // One decimal, rounded to nearest.
  uint64_t tenths = (bytes / scale) * 10 + ((bytes % scale) * 10 + scale / 2) / scale;
  if (tenths % 10 == 0) return kj::str(tenths / 10, " ", UNITS[unit]);
  return kj::str(tenths / 10, ".", tenths % 10, " ", UNITS[unit]);
}

kj::String formatCores(uint32_t millicores) {
  uint32_t whole = millicores / 1000;
  uint32_t fraction = millicores % 1000;
  if (fraction == 0) return kj::str(whole);
  char digits[4] = {char('0' + fraction / 100), char('0' + fraction / 10 % 10),
                    char('0' + fraction % 10), '\0'};
  size_t length = 3;
  while (digits[length - 1] == '0') digits[--length] = '\0';
  return kj::str(whole, ".", digits);
}

kj::String formatMillis(uint64_t millis) {
  uint64_t hours = millis / 3600000;
  uint64_t minutes = millis / 60000 % 60;
  uint64_t seconds = millis / 1000 % 60;
  uint64_t rest = millis % 1000;
  auto twoDigits = [](uint64_t n) { return kj::str(n < 10 ? "0" : "", n); };
  auto threeDigits = [](uint64_t n) { return kj::str(n < 100 ? "0" : "", n < 10 ? "0" : "", n); };
  if (hours > 0) {
    return kj::str(hours, "h", twoDigits(minutes), "m", twoDigits(seconds), ".", threeDigits(rest),
                   "s");
  }
  if (minutes > 0) {
    return kj::str(minutes, "m", twoDigits(seconds), ".", threeDigits(rest), "s");
  }
  return kj::str(seconds, ".", threeDigits(rest), "s");
}

kj::String formatTime(int64_t unixMillis) {
  if (unixMillis == 0) return kj::str("-");
  time_t seconds = unixMillis / 1000;
  struct tm local;
  char buffer[32];
  if (localtime_r(&seconds, &local) == nullptr ||
      strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S", &local) == 0) {
    return kj::str(unixMillis);
  }
  return kj::str(buffer);
}

kj::String formatCommandLine(kj::StringPtr command, capnp::List<capnp::Text>::Reader args) {
  kj::Vector<kj::String> words(args.size() + 1);
  words.add(shellQuote(command));
  for (auto arg : args) words.add(shellQuote(arg));
  return kj::strArray(words, " ");
}

}  // namespace client
}  // namespace runner

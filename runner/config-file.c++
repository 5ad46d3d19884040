#include "runner/config-file.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>
#include <string.h>
#include <unistd.h>

namespace runner {

namespace {

constexpr size_t MAX_CONFIG_BYTES = 1 << 20;

[[noreturn]] void fail(kj::String message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(message)));
}

bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}
bool isKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// The line without its comment and without the blanks around what is left.
kj::ArrayPtr<const char> meaningful(kj::ArrayPtr<const char> line) {
  for (size_t i = 0; i < line.size(); i++) {
    if (line[i] == '#' && (i == 0 || isBlank(line[i - 1]))) {
      line = line.slice(0, i);
      break;
    }
  }
  size_t begin = 0, end = line.size();
  while (begin < end && isBlank(line[begin])) ++begin;
  while (end > begin && isBlank(line[end - 1])) --end;
  return line.slice(begin, end);
}

}  // namespace

kj::Array<ConfigEntry> parseConfigFile(kj::StringPtr path, kj::StringPtr text) {
  kj::Vector<ConfigEntry> entries;
  unsigned number = 0;
  size_t start = 0;
  while (start < text.size()) {
    ++number;
    size_t end = start;
    while (end < text.size() && text[end] != '\n') ++end;
    auto line = meaningful(text.asArray().slice(start, end));
    start = end + 1;
    if (line.size() == 0) continue;

    auto where = [&]() { return kj::str(path, ':', number, ": "); };
    size_t keyEnd = 0;
    while (keyEnd < line.size() && isKeyChar(line[keyEnd])) ++keyEnd;
    if (keyEnd == 0 || line[0] == '-') {
      if (line.size() >= 2 && line[0] == '-' && line[1] == '-') {
        fail(kj::str(where(), "write a key without its leading --"));
      }
      fail(kj::str(where(), "expected KEY = VALUE, a key being one of runnerd's long flags"));
    }
    auto key = kj::heapString(line.slice(0, keyEnd));
    size_t at = keyEnd;
    while (at < line.size() && isBlank(line[at])) ++at;
    if (at < line.size() && line[at] == '=') {
      ++at;
      while (at < line.size() && isBlank(line[at])) ++at;
    } else if (at == keyEnd && at < line.size()) {
      fail(kj::str(where(), "a key is lower-case letters, digits and '-', then '=' or a blank"));
    }
    if (at == line.size()) fail(kj::str(where(), key, " has no value"));
    for (char c : line.slice(at, line.size())) {
      if (c == '\0') fail(kj::str(where(), "the value of ", key, " holds a NUL byte"));
    }
    entries.add(ConfigEntry{kj::mv(key), kj::heapString(line.slice(at, line.size())), number});
  }
  return entries.releaseAsArray();
}

kj::Array<ConfigEntry> readConfigFile(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(kj::str("cannot read ", path, ": ", strerror(errno)));
  kj::AutoCloseFd file(fd);
  kj::Vector<char> text;
  char buffer[8192];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(kj::str("cannot read ", path, ": ", strerror(errno)));
    }
    if (n == 0) break;
    text.addAll(kj::arrayPtr(buffer, n));
    if (text.size() > MAX_CONFIG_BYTES) {
      fail(kj::str(path, ": larger than ", MAX_CONFIG_BYTES, " bytes; not a configuration file"));
    }
  }
  text.add('\0');
  return parseConfigFile(path, kj::String(text.releaseAsArray()));
}

}  // namespace runner

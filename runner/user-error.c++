#include "runner/user-error.h"

#include <kj/debug.h>
#include <kj/vector.h>

namespace runner {

namespace {

constexpr kj::StringPtr REMOTE_PREFIX = "remote exception: "_kj;

constexpr ErrorKind ALL_KINDS[] = {
    ErrorKind::NOT_FOUND, ErrorKind::PERMISSION_DENIED, ErrorKind::LIMIT,    ErrorKind::INVALID,
    ErrorKind::CONFLICT,  ErrorKind::UNAVAILABLE,       ErrorKind::INTERNAL,
};

bool isLineBreak(char c) {
  return c == '\n' || c == '\r';
}

// `text` without line breaks: each run of them, with the blanks around it, becomes one space;
// blanks at either end go.
kj::String oneLine(kj::StringPtr text) {
  bool multiLine = false;
  for (char c : text) multiLine = multiLine || isLineBreak(c);
  if (!multiLine) return kj::str(text);
  auto isBlank = [](char c) { return c == ' ' || c == '\t' || isLineBreak(c); };
  kj::Vector<char> result(text.size() + 1);
  bool pendingSpace = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (isLineBreak(c)) {
      while (result.size() > 0 && isBlank(result.back())) result.removeLast();
      pendingSpace = result.size() > 0;
      while (i + 1 < text.size() && isBlank(text[i + 1])) ++i;
      continue;
    }
    if (pendingSpace) {
      result.add(' ');
      pendingSpace = false;
    }
    result.add(c);
  }
  result.add('\0');
  return kj::String(result.releaseAsArray());
}

kj::Exception::Type defaultType(ErrorKind kind) {
  return kind == ErrorKind::LIMIT ? kj::Exception::Type::OVERLOADED : kj::Exception::Type::FAILED;
}

kj::StringPtr withoutRemotePrefixes(kj::StringPtr description) {
  while (description.startsWith(REMOTE_PREFIX))
    description = description.slice(REMOTE_PREFIX.size());
  return description;
}

}  // namespace

kj::StringPtr errorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::NOT_FOUND:
      return "not found"_kj;
    case ErrorKind::PERMISSION_DENIED:
      return "permission denied"_kj;
    case ErrorKind::LIMIT:
      return "limit"_kj;
    case ErrorKind::INVALID:
      return "invalid"_kj;
    case ErrorKind::CONFLICT:
      return "conflict"_kj;
    case ErrorKind::UNAVAILABLE:
      return "unavailable"_kj;
    case ErrorKind::INTERNAL:
      return "internal"_kj;
  }
  KJ_UNREACHABLE;
}

kj::Exception userError(ErrorKind kind, kj::StringPtr message, const char* file, int line) {
  return userError(kind, defaultType(kind), message, file, line);
}

kj::Exception userError(ErrorKind kind, kj::Exception::Type type, kj::StringPtr message,
                        const char* file, int line) {
  return kj::Exception(type, file, line, kj::str(errorKindName(kind), ": ", oneLine(message)));
}

void throwUserError(ErrorKind kind, kj::StringPtr message, const char* file, int line) {
  kj::throwFatalException(userError(kind, message, file, line));
}

void throwUserError(ErrorKind kind, kj::Exception::Type type, kj::StringPtr message,
                    const char* file, int line) {
  kj::throwFatalException(userError(kind, type, message, file, line));
}

kj::Maybe<ErrorKind> errorKindOf(kj::StringPtr description) {
  for (auto kind : ALL_KINDS) {
    auto name = errorKindName(kind);
    if (description.startsWith(name) && description.size() >= name.size() + 2 &&
        description[name.size()] == ':' && description[name.size() + 1] == ' ') {
      return kind;
    }
  }
  return nullptr;
}

kj::StringPtr withoutErrorKind(kj::StringPtr description) {
  KJ_IF_MAYBE (kind, errorKindOf(description)) {
    return description.slice(errorKindName(*kind).size() + 2);
  }
  return description;
}

kj::Exception withErrorKind(kj::Exception&& exception) {
  if (errorKindOf(exception.getDescription()) != nullptr) return kj::mv(exception);
  return userError(ErrorKind::INTERNAL, exception.getType(), exception.getDescription(),
                   exception.getFile(), exception.getLine());
}

kj::Exception passedOn(kj::Exception&& exception, kj::Maybe<ErrorKind> fallback) {
  auto description = withoutRemotePrefixes(exception.getDescription());
  KJ_IF_MAYBE (kind, fallback) {
    if (errorKindOf(description) == nullptr) {
      return userError(*kind, exception.getType(), description, exception.getFile(),
                       exception.getLine());
    }
  }
  if (description.size() == exception.getDescription().size()) return kj::mv(exception);
  // The file of an exception from another process is "(remote)": where it came from.
  return kj::Exception(exception.getType(), exception.getFile(), exception.getLine(),
                       oneLine(description));
}

}  // namespace runner

#include "client/error-message.h"

#include <kj/vector.h>

namespace runner {
namespace client {

namespace {

constexpr kj::StringPtr REMOTE_PREFIX = "remote exception: "_kj;
constexpr kj::StringPtr EXPECTED_PREFIX = "expected "_kj;

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Newlines (multi-line OpenSSL errors, logged values) become ", "; surrounding space goes.
kj::String toOneLine(kj::StringPtr text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && isSpace(text[begin])) ++begin;
  while (end > begin && isSpace(text[end - 1])) --end;
  kj::Vector<char> result(end - begin + 1);
  for (size_t i = begin; i < end; i++) {
    if (text[i] == '\n') {
      while (result.size() > 0 && isSpace(result.back())) result.removeLast();
      result.addAll(", "_kj);
      while (i + 1 < end && isSpace(text[i + 1])) ++i;
    } else if (text[i] != '\r') {
      result.add(text[i]);
    }
  }
  result.add('\0');
  return kj::String(result.releaseAsArray());
}

kj::Vector<kj::StringPtr> splitParts(kj::StringPtr text, kj::Vector<kj::String>& storage) {
  kj::Vector<kj::StringPtr> parts;
  size_t start = 0;
  for (size_t i = 0; i + 1 < text.size(); i++) {
    if (text[i] == ';' && text[i + 1] == ' ') {
      parts.add(storage.add(kj::heapString(text.slice(start, i))));
      start = i + 2;
      ++i;
    }
  }
  parts.add(storage.add(kj::heapString(text.slice(start))));
  return parts;
}

// The value of a "NAME = VALUE" part, where NAME is the C++ expression KJ's macros label
// arguments with (an identifier, a member access, a call, a literal): no spaces.
kj::Maybe<kj::StringPtr> labelledValue(kj::StringPtr part) {
  if (part.size() == 0) return nullptr;
  char first = part[0];
  bool startsLikeExpression = ('a' <= first && first <= 'z') || ('A' <= first && first <= 'Z') ||
                              ('0' <= first && first <= '9') || first == '_';
  if (!startsLikeExpression) return nullptr;
  for (size_t i = 1; i + 2 < part.size(); i++) {
    if (part[i] == ' ') {
      if (part[i + 1] == '=' && part[i + 2] == ' ') return part.slice(i + 3);
      return nullptr;
    }
  }
  return nullptr;
}

}  // namespace

kj::String cleanErrorMessage(kj::StringPtr description) {
  kj::String text = toOneLine(description);
  kj::StringPtr rest = text;
  while (rest.startsWith(REMOTE_PREFIX)) rest = rest.slice(REMOTE_PREFIX.size());

  kj::Vector<kj::String> storage;
  auto parts = splitParts(rest, storage);

  // "expected CONDITION" says what the code checked; the message after it says what went wrong.
  size_t first = 0;
  if (parts.size() > 1 && parts[0].startsWith(EXPECTED_PREFIX) &&
      labelledValue(parts[1]) == nullptr) {
    first = 1;
  }

  // KJ_EXCEPTION(FAILED, "job not found: ", id) reads "job not found: ; id = 42": a piece that
  // ends or starts with a blank was meant to be glued to its neighbour.
  kj::Vector<char> message;
  bool hadValue = false;
  for (size_t i = first; i < parts.size(); i++) {
    auto value = labelledValue(parts[i]);
    kj::StringPtr piece = parts[i];
    if (i > first) {
      KJ_IF_MAYBE (v, value) {
        piece = *v;
      }
      bool glued = (message.size() > 0 && message.back() == ' ') || parts[i].startsWith(" ");
      if (glued) {
        // Nothing between the pieces.
      } else if (value != nullptr) {
        message.addAll(hadValue ? ", "_kj : ": "_kj);
      } else {
        message.addAll("; "_kj);
      }
    }
    message.addAll(piece);
    hadValue = value != nullptr && i > first;
  }
  while (message.size() > 0 && isSpace(message.back())) message.removeLast();
  message.add('\0');
  return kj::String(message.releaseAsArray());
}

kj::String cleanErrorMessage(const kj::Exception& exception) {
  return cleanErrorMessage(exception.getDescription());
}

kj::String errorLine(const kj::Exception& exception) {
  kj::StringPtr description = exception.getDescription();
  if (!description.startsWith(REMOTE_PREFIX)) return cleanErrorMessage(description);
  // A reason passed on through another capnp hop carries the prefix once per hop.
  while (description.startsWith(REMOTE_PREFIX)) {
    description = description.slice(REMOTE_PREFIX.size());
  }
  return kj::str(description);
}

}  // namespace client
}  // namespace runner

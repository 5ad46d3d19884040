#include "runner/job-names.h"

#include <kj/debug.h>
#include <kj/map.h>

#include "runner/printable.h"
#include "runner/user-error.h"

namespace runner {

namespace {

bool isNameChar(char c) {
  return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool isHexOrDash(char c) {
  return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') || c == '-';
}

}  // namespace

void requireValidJobName(kj::StringPtr name) {
  if (name.size() == 0 || name.size() > MAX_JOB_NAME_CHARS) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("job name '", printable(name), "': it must have 1 to ",
                           MAX_JOB_NAME_CHARS, " characters"));
  }
  bool onlyHex = true;
  for (char c : name) {
    if (!isNameChar(c)) {
      throwUserError(ErrorKind::INVALID,
                     kj::str("job name '", printable(name),
                             "': only letters, digits, '.', '_' and '-' are allowed"));
    }
    onlyHex = onlyHex && isHexOrDash(c);
  }
  if (onlyHex) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("job name '", printable(name),
                           "': a name made only of hexadecimal digits and '-' could be taken "
                           "for a job id"));
  }
}

void requireValidLabels(kj::ArrayPtr<const JobLabel> labels) {
  if (labels.size() > MAX_JOB_LABELS) {
    throwUserError(ErrorKind::INVALID,
                   kj::str("too many labels (", labels.size(), "; at most ", MAX_JOB_LABELS, ")"));
  }
  kj::HashSet<kj::StringPtr> keys;
  for (auto& label : labels) {
    auto& key = label.key;
    if (key.size() == 0 || key.size() > MAX_LABEL_KEY_CHARS) {
      throwUserError(ErrorKind::INVALID,
                     kj::str("label key '", printable(key), "': it must have 1 to ",
                             MAX_LABEL_KEY_CHARS, " characters"));
    }
    for (char c : key) {
      if (!isNameChar(c) && c != '/') {
        throwUserError(ErrorKind::INVALID,
                       kj::str("label key '", printable(key),
                               "': only letters, digits, '.', '_', '-' and '/' are allowed"));
      }
    }
    if (keys.contains(key)) {
      throwUserError(ErrorKind::INVALID, kj::str("label key '", key, "' is given more than once"));
    }
    keys.insert(key);
    auto& value = label.value;
    if (value.size() > MAX_LABEL_VALUE_BYTES) {
      throwUserError(ErrorKind::INVALID,
                     kj::str("the value of label '", key, "' is too long (", value.size(),
                             " bytes; at most ", MAX_LABEL_VALUE_BYTES, ")"));
    }
    bool control = false;
    for (char c : value) control = control || uint8_t(c) < 0x20 || c == 0x7f;
    if (control || !isValidUtf8(value)) {
      throwUserError(ErrorKind::INVALID, kj::str("the value of label '", key,
                                                 "' must be UTF-8 text without control "
                                                 "characters: '",
                                                 printable(value), "'"));
    }
  }
}

bool looksLikeIdPrefix(kj::StringPtr text) {
  for (char c : text) {
    if (!(('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || c == '-')) return false;
  }
  return true;
}

}  // namespace runner

#include "executors/cgroup/cgroup-dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace runner::executors::cgroup {

void failLimit(kj::StringPtr limit, kj::StringPtr detail, kj::Exception::Type type) {
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::str(limit, ": ", detail)));
}

CgroupDir::CgroupDir(kj::String path) : dirPath(kj::mv(path)) {
  int fd;
  KJ_SYSCALL(fd = open(dirPath.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), dirPath);
  dirFd = kj::AutoCloseFd(fd);
}

void CgroupDir::rename(kj::StringPtr name) {
  KJ_REQUIRE(name.size() > 0 && name.findFirst('/') == nullptr && name != "." && name != "..",
             "not a cgroup name", name);
  auto slash = KJ_REQUIRE_NONNULL(dirPath.findLast('/'), "a cgroup path has a parent", dirPath);
  auto renamed = kj::str(dirPath.slice(0, slash + 1), name);
  KJ_SYSCALL(::rename(dirPath.cStr(), renamed.cStr()), "renaming a cgroup", dirPath, renamed);
  dirPath = kj::mv(renamed);
}

kj::Maybe<kj::String> CgroupDir::tryRead(kj::StringPtr name) const {
  int fd;
  KJ_SYSCALL_HANDLE_ERRORS(fd = openat(dirFd, name.cStr(), O_RDONLY | O_CLOEXEC)) {
    case ENOENT:
      return nullptr;
    default:
      KJ_FAIL_SYSCALL("open", error, dirPath, name);
  }
  kj::AutoCloseFd file(fd);
  // Interface files are small; read until EOF in page-sized steps.
  kj::Vector<char> text(4096);
  char buffer[4096];
  for (;;) {
    ssize_t n;
    KJ_SYSCALL(n = ::read(file, buffer, sizeof(buffer)), dirPath, name);
    if (n == 0) break;
    text.addAll(buffer, buffer + n);
  }
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

kj::String CgroupDir::read(kj::StringPtr name) const {
  KJ_IF_MAYBE (text, tryRead(name)) {
    return kj::mv(*text);
  }
  KJ_FAIL_REQUIRE("cgroup interface file missing", dirPath, name);
}

int CgroupDir::tryWrite(kj::StringPtr name, kj::StringPtr value) const {
  int fd = openat(dirFd, name.cStr(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    int error = errno;
    // cgroupfs answers EACCES for a file it does not have; say what really happened.
    if (error == EACCES && !exists(name)) error = ENOENT;
    return error;
  }
  kj::AutoCloseFd file(fd);
  ssize_t n;
  do {
    n = ::write(file, value.begin(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  KJ_ASSERT(size_t(n) == value.size(), "short write to a cgroup file", dirPath, name);
  return 0;
}

void CgroupDir::writeLimit(kj::StringPtr limit, kj::StringPtr name, kj::StringPtr value) const {
  int error = tryWrite(name, value);
  if (error != 0) {
    failLimit(limit,
              kj::str("writing \"", value, "\" to ", dirPath, "/", name, ": ", strerror(error)),
              kj::Exception::Type::FAILED);
  }
}

namespace {

// Calls `func(line)` for each line of `text`, without the newline.
template <typename Func>
void forEachLine(kj::StringPtr text, Func&& func) {
  const char* p = text.begin();
  const char* end = text.end();
  while (p < end) {
    const char* lineEnd = p;
    while (lineEnd < end && *lineEnd != '\n') ++lineEnd;
    func(kj::ArrayPtr<const char>(p, lineEnd));
    p = lineEnd + 1;
  }
}

uint64_t parseNumber(kj::ArrayPtr<const char> digits) {
  return kj::heapString(digits).parseAs<uint64_t>();
}

}  // namespace

kj::Maybe<uint64_t> CgroupDir::readKeyed(kj::StringPtr name, kj::StringPtr key) const {
  kj::Maybe<uint64_t> result;
  KJ_IF_MAYBE (text, tryRead(name)) {
    forEachLine(*text, [&](kj::ArrayPtr<const char> line) {
      const char* space = line.begin();
      while (space < line.end() && *space != ' ') ++space;
      if (space < line.end() && kj::ArrayPtr<const char>(line.begin(), space) == key.asArray()) {
        result = parseNumber(kj::ArrayPtr<const char>(space + 1, line.end()));
      }
    });
  }
  return result;
}

kj::Maybe<uint64_t> CgroupDir::readNumber(kj::StringPtr name) const {
  KJ_IF_MAYBE (text, tryRead(name)) {
    const char* end = text->end();
    while (end > text->begin() && (end[-1] == '\n' || end[-1] == ' ')) --end;
    return parseNumber(kj::ArrayPtr<const char>(text->begin(), end));
  }
  return nullptr;
}

kj::Array<pid_t> CgroupDir::processes() const {
  kj::Vector<pid_t> pids;
  KJ_IF_MAYBE (text, tryRead("cgroup.procs")) {
    forEachLine(*text, [&](kj::ArrayPtr<const char> line) {
      if (line.size() > 0) pids.add(kj::heapString(line).parseAs<pid_t>());
    });
  }
  return pids.releaseAsArray();
}

bool CgroupDir::exists(kj::StringPtr name) const {
  return faccessat(dirFd, name.cStr(), F_OK, 0) == 0;
}

void makeDirs(kj::StringPtr root, kj::StringPtr relative) {
  kj::String path = kj::heapString(root);
  const char* p = relative.begin();
  const char* end = relative.end();
  while (p < end) {
    const char* pieceEnd = p;
    while (pieceEnd < end && *pieceEnd != '/') ++pieceEnd;
    if (pieceEnd > p) {
      path = kj::str(path, "/", kj::ArrayPtr<const char>(p, pieceEnd));
      KJ_SYSCALL_HANDLE_ERRORS(mkdir(path.cStr(), 0755)) {
        case EEXIST:
          break;
        default:
          KJ_FAIL_SYSCALL("mkdir", error, path);
      }
    }
    p = pieceEnd + 1;
  }
}

kj::String joinPath(kj::ArrayPtr<const kj::StringPtr> pieces) {
  kj::Vector<char> out;
  for (auto piece : pieces) {
    const char* begin = piece.begin();
    const char* end = piece.end();
    if (out.size() > 0) {
      while (begin < end && *begin == '/') ++begin;
    }
    while (end > begin && end[-1] == '/' && end - 1 > piece.begin()) --end;
    if (begin == end) continue;
    if (out.size() > 0 && out.back() != '/') out.add('/');
    out.addAll(begin, end);
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

bool isBelow(kj::StringPtr path, kj::StringPtr dir) {
  size_t n = dir.size();
  while (n > 1 && dir[n - 1] == '/') --n;
  if (n == 0 || path.size() <= n + 1 || memcmp(path.begin(), dir.begin(), n) != 0) return false;
  if (n > 1 && path[n] != '/') return false;
  // No component may climb out again.
  const char* component = path.begin();
  for (const char* p = path.begin();; ++p) {
    if (p == path.end() || *p == '/') {
      auto piece = kj::arrayPtr(component, p);
      if (piece == "."_kj.asArray() || piece == ".."_kj.asArray()) return false;
      if (p == path.end()) return true;
      component = p + 1;
    }
  }
}

bool tryRemoveDir(kj::StringPtr path) {
  KJ_SYSCALL_HANDLE_ERRORS(rmdir(path.cStr())) {
    case ENOENT:
      return true;
    case EBUSY:
      return false;
    default:
      KJ_FAIL_SYSCALL("rmdir", error, path);
  }
  return true;
}

void removeDirBlocking(const CgroupDir& dir, uint32_t maxMillis) {
  uint32_t waited = 0;
  uint32_t pause = 1;
  for (;;) {
    if (tryRemoveDir(dir.path())) return;
    KJ_REQUIRE(waited < maxMillis, "cgroup still busy; processes left in it", dir.path(),
               dir.processes().size());
    for (pid_t pid : dir.processes()) kill(pid, SIGKILL);
    struct timespec delay = {0, long(pause) * 1000000};
    nanosleep(&delay, nullptr);
    waited += pause;
    pause = kj::min(pause * 2, 100u);
  }
}

kj::Array<kj::String> listSubdirectories(kj::StringPtr path) {
  kj::Vector<kj::String> names;
  DIR* dir = opendir(path.cStr());
  if (dir == nullptr) {
    if (errno == ENOENT) return nullptr;
    KJ_FAIL_SYSCALL("opendir", errno, path);
  }
  KJ_DEFER(closedir(dir));
  while (struct dirent* entry = readdir(dir)) {
    kj::StringPtr name = entry->d_name;
    if (entry->d_type != DT_DIR || name == "." || name == "..") continue;
    names.add(kj::str(name));
  }
  return names.releaseAsArray();
}

}  // namespace runner::executors::cgroup

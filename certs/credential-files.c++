#include "certs/credential-files.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

namespace runner {
namespace certs {

namespace {

bool exists(kj::StringPtr path) {
  struct stat info;
  if (lstat(path.cStr(), &info) == 0) return true;
  int error = errno;
  if (error != ENOENT) KJ_FAIL_REQUIRE(kj::str("cannot inspect ", path, ": ", strerror(error)));
  return false;
}

kj::String join(kj::StringPtr dir, kj::StringPtr name) {
  if (dir.endsWith("/")) return kj::str(dir, name);
  return kj::str(dir, '/', name);
}

}  // namespace

void writeFile(kj::StringPtr path, kj::StringPtr text, mode_t mode, bool overwrite) {
  if (overwrite) {
    if (unlink(path.cStr()) < 0 && errno != ENOENT) {
      KJ_FAIL_REQUIRE(kj::str("cannot replace ", path, ": ", strerror(errno)));
    }
  }

  // O_EXCL also refuses to follow a symlink planted at `path`.
  int fd = open(path.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    int error = errno;
    if (error == EEXIST) {
      KJ_FAIL_REQUIRE(kj::str(path, " already exists (use --force to overwrite it)"));
    }
    KJ_FAIL_REQUIRE(kj::str("cannot create ", path, ": ", strerror(error)));
  }
  kj::AutoCloseFd file(fd);
  KJ_ON_SCOPE_FAILURE(unlink(path.cStr()));

  // The umask may have taken bits away from `mode`; a certificate should still be readable.
  KJ_SYSCALL(fchmod(file, mode), path);
  kj::FdOutputStream(file.get()).write(text.begin(), text.size());
  KJ_SYSCALL(fsync(file), path);
}

void writeCredentials(kj::StringPtr dir, kj::StringPtr baseName, const Credentials& credentials,
                      bool overwrite) {
  auto certPath = join(dir, kj::str(baseName, ".pem"));
  auto keyPath = join(dir, kj::str(baseName, "-key.pem"));
  if (!overwrite) {
    for (auto& path : {certPath.asPtr(), keyPath.asPtr()}) {
      if (exists(path)) {
        KJ_FAIL_REQUIRE(kj::str(path, " already exists (use --force to overwrite it)"));
      }
    }
  }
  writeFile(keyPath, credentials.keyPem, 0600, overwrite);
  writeFile(certPath, credentials.certPem, 0644, overwrite);
}

kj::String readFile(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) KJ_FAIL_REQUIRE(kj::str("cannot read ", path, ": ", strerror(errno)));
  kj::AutoCloseFd file(fd);
  return kj::FdInputStream(file.get()).readAllText();
}

Authority readAuthority(kj::StringPtr dir) {
  auto certPem = readFile(join(dir, CA_CERT_FILE));
  auto keyPem = readFile(join(dir, CA_KEY_FILE));
  return Authority::load(certPem, keyPem);
}

}  // namespace certs
}  // namespace runner

#include "runner/homes.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

namespace runner {
namespace {

// "0755": a mode as chmod takes it.
kj::String octalMode(mode_t mode) {
  char text[8];
  snprintf(text, sizeof(text), "%04o", unsigned(mode & 07777));
  return kj::str(text);
}

}  // namespace

kj::AutoCloseFd openHomesDirectory(kj::StringPtr path, kj::StringPtr flag) {
  int fd = open(path.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    KJ_FAIL_REQUIRE(kj::str(flag, " ", path, ": ", strerror(errno)));
  }
  kj::AutoCloseFd owned(fd);
  struct stat st;
  KJ_SYSCALL(fstat(fd, &st), path);
  if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    KJ_FAIL_REQUIRE(kj::str(flag, " ", path,
                            " must be owned by root and writable by nobody else "
                            "(it is owned by uid ",
                            st.st_uid, ", mode ", octalMode(st.st_mode), ")"));
  }
  return owned;
}

void makeHome(int homesFd, kj::StringPtr homesPath, uint32_t uid, uint32_t gid) {
  auto name = kj::str(uid);
  auto path = kj::str(homesPath, '/', uid);
  if (mkdirat(homesFd, name.cStr(), 0700) == 0) {
    if (fchownat(homesFd, name.cStr(), uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
      int error = errno;
      unlinkat(homesFd, name.cStr(), AT_REMOVEDIR);
      KJ_FAIL_REQUIRE(
          kj::str("cannot give the home ", path, " to uid ", uid, ": ", strerror(error)));
    }
    return;
  }
  if (errno != EEXIST) {
    KJ_FAIL_REQUIRE(kj::str("cannot create the home ", path, ": ", strerror(errno)));
  }
  struct stat st;
  KJ_SYSCALL(fstatat(homesFd, name.cStr(), &st, AT_SYMLINK_NOFOLLOW), path);
  if (!S_ISDIR(st.st_mode) || st.st_uid != uid || st.st_gid != gid) {
    KJ_FAIL_REQUIRE(kj::str("the home ", path, " is not a directory owned by uid ", uid,
                            " and gid ", gid, "; refusing to use it"));
  }
}

}  // namespace runner

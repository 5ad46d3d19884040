#include "runner/credentials.h"

#include <grp.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <pwd.h>
#include <unistd.h>

namespace runner {

executors::Credentials credentialsOf(const struct passwd& pw) {
  executors::Credentials creds;
  creds.uid = pw.pw_uid;
  creds.gid = pw.pw_gid;
  creds.userName = kj::str(pw.pw_name);
  creds.homeDir = kj::str(pw.pw_dir);
  int count = 16;
  kj::Array<gid_t> groups;
  for (;;) {
    groups = kj::heapArray<gid_t>(count);
    int n = count;
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.begin(), &n) >= 0) {
      creds.supplementaryGroups = kj::heapArray(groups.slice(0, n));
      break;
    }
    KJ_ASSERT(n > count, "getgrouplist() failed", pw.pw_name);
    count = n;
  }
  return creds;
}

executors::Credentials resolveRunAs(kj::StringPtr userName) {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[16384];
  int error = getpwnam_r(userName.cStr(), &pw, buffer, sizeof(buffer), &found);
  if (found == nullptr) {
    KJ_FAIL_REQUIRE(kj::str("unknown run-as user '", userName, "'",
                            error != 0 ? kj::str(": ", strerror(error)) : kj::str()));
  }
  if (pw.pw_uid == 0 || pw.pw_gid == 0) {
    KJ_FAIL_REQUIRE(kj::str("refusing to run jobs as '", userName, "': it is root"));
  }
  auto creds = credentialsOf(pw);
  for (gid_t group : creds.supplementaryGroups) {
    if (group == 0) {
      KJ_FAIL_REQUIRE(
          kj::str("refusing to run jobs as '", userName, "': it is a member of group root"));
    }
  }
  return creds;
}

executors::Credentials currentUser() {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[16384];
  getpwuid_r(geteuid(), &pw, buffer, sizeof(buffer), &found);
  KJ_REQUIRE(found != nullptr, "this process's user has no passwd entry", geteuid());
  auto creds = credentialsOf(pw);
  // Not root here, so the groups cannot be changed: the job keeps this process's own.
  creds.gid = getegid();
  return creds;
}

}  // namespace runner

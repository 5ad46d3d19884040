#pragma once
// The private homes of dynamic uids: <homes>/<uid>, a directory of mode 0700 owned by the uid and
// its gid, made on the first start of a job that lives there. runnerd makes them when it runs its
// jobs itself (DynamicIdentities); runner-supervisor makes them when it launches a job whose home
// is there, so that an unprivileged runnerd never needs to.

#include <kj/io.h>
#include <kj/string.h>
#include <stdint.h>

namespace runner {

// Opens the directory of homes `path` for makeHome(). It must be a directory (not a symlink) owned
// by root and writable by nobody else: then no job user can race makeHome() with a symlink.
// Throws one line naming `flag` (the option that gave the path) otherwise.
kj::AutoCloseFd openHomesDirectory(kj::StringPtr path, kj::StringPtr flag);

// Creates <homesPath>/<uid> in the open directory `homesFd` (mode 0700, owned by uid:gid), or
// checks that the one already there is a directory owned by uid and gid. Throws one line
// otherwise; a home it made but could not give away is removed again. Waits on the disk: call it
// where that is allowed (a thread, or start-up).
void makeHome(int homesFd, kj::StringPtr homesPath, uint32_t uid, uint32_t gid);

}  // namespace runner

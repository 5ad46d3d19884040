#include "executors/mount-namespaces.h"

namespace runner::executors {

kj::Maybe<kj::StringPtr> underPrivateTmpfs(kj::StringPtr path) {
  for (kj::StringPtr dir : PRIVATE_TMPFS_MOUNTS) {
    if (path.startsWith(dir) && (path.size() == dir.size() || path[dir.size()] == '/')) return dir;
  }
  return nullptr;
}

}  // namespace runner::executors

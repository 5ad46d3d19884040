#include "executors/cgroup/cgroup-driver.h"

#include <kj/debug.h>

#include "executors/cgroup/cgroup-dir.h"
#include "executors/cgroup/cgroup-v1.h"
#include "executors/cgroup/cgroup-v2.h"

namespace runner::executors::cgroup {

namespace {

// Splits `text` at each `separator`; empty pieces are kept.
kj::Vector<kj::ArrayPtr<const char>> split(kj::ArrayPtr<const char> text, char separator) {
  kj::Vector<kj::ArrayPtr<const char>> pieces;
  const char* start = text.begin();
  for (const char* p = text.begin(); p != text.end(); ++p) {
    if (*p == separator) {
      pieces.add(kj::ArrayPtr<const char>(start, p));
      start = p + 1;
    }
  }
  pieces.add(kj::ArrayPtr<const char>(start, text.end()));
  return pieces;
}

bool equals(kj::ArrayPtr<const char> a, kj::StringPtr b) {
  return a == b.asArray();
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
kj::String unescapeOctal(kj::ArrayPtr<const char> text) {
  kj::Vector<char> out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      char a = text[i + 1], b = text[i + 2], c = text[i + 3];
      if (a >= '0' && a <= '7' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.add(char((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.add(text[i]);
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// The v1 controllers runner knows of; other mount options of a cgroup mount are not controllers.
constexpr kj::StringPtr V1_CONTROLLERS[] = {
    "cpu"_kj,     "cpuacct"_kj, "cpuset"_kj,   "memory"_kj, "devices"_kj,
    "freezer"_kj, "net_cls"_kj, "net_prio"_kj, "blkio"_kj,  "perf_event"_kj,
    "hugetlb"_kj, "pids"_kj,    "rdma"_kj,     "misc"_kj,
};

// `path` (a cgroup as /proc/self/cgroup names it) relative to the hierarchy's mount root.
kj::String relativeTo(kj::StringPtr path, kj::StringPtr mountRoot) {
  if (mountRoot == "/" || mountRoot.size() == 0) return kj::heapString(path);
  if (path.startsWith(mountRoot) &&
      (path.size() == mountRoot.size() || path[mountRoot.size()] == '/')) {
    kj::StringPtr rest = path.slice(mountRoot.size());
    return kj::heapString(rest.size() > 0 ? rest : "/"_kj);
  }
  return kj::heapString(path);
}

kj::String readProcFile(kj::StringPtr name) {
  return CgroupDir(kj::str("/proc/self")).read(name);
}

bool hasWord(kj::StringPtr list, kj::StringPtr word) {
  for (auto piece : split(list.asArray(), ' ')) {
    if (piece.size() > 0 && piece.back() == '\n') piece = piece.slice(0, piece.size() - 1);
    if (equals(piece, word)) return true;
  }
  return false;
}

}  // namespace

kj::Maybe<kj::String> ownCgroup(kj::StringPtr procSelfCgroup, kj::Maybe<kj::StringPtr> controller) {
  for (auto line : split(procSelfCgroup.asArray(), '\n')) {
    // "ID:CONTROLLERS:PATH"; the path may itself contain ':'.
    auto first = split(line, ':');
    if (first.size() < 3) continue;
    auto controllers = first[1];
    const char* pathStart = first[2].begin();
    kj::ArrayPtr<const char> path(pathStart, line.end());
    KJ_IF_MAYBE (name, controller) {
      for (auto c : split(controllers, ',')) {
        if (equals(c, *name)) return kj::heapString(path);
      }
    } else if (equals(first[0], "0") && controllers.size() == 0) {
      return kj::heapString(path);
    }
  }
  return nullptr;
}

kj::String resolveCgroupParent(kj::StringPtr ownCgroupPath, kj::StringPtr parent) {
  if (parent.startsWith("/")) return kj::heapString(parent);
  return joinPath({ownCgroupPath.size() > 0 ? ownCgroupPath : "/"_kj, parent});
}

kj::String defaultCgroupParent(kj::StringPtr ownCgroupPath) {
  return resolveCgroupParent(ownCgroupPath, DEFAULT_CGROUP_PARENT);
}

CgroupMounts parseCgroupMounts(kj::StringPtr mountinfo) {
  CgroupMounts mounts;
  for (auto line : split(mountinfo.asArray(), '\n')) {
    auto fields = split(line, ' ');
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    size_t dash = 0;
    while (dash < fields.size() && !equals(fields[dash], "-")) ++dash;
    if (dash < 5 || dash + 3 >= fields.size()) continue;
    auto fsType = fields[dash + 1];
    kj::String root = unescapeOctal(fields[3]);
    kj::String mountPoint = unescapeOctal(fields[4]);
    if (equals(fsType, "cgroup2")) {
      if (mounts.v2 == nullptr) {
        mounts.v2 = CgroupMounts::V2{kj::mv(mountPoint), kj::mv(root)};
      }
    } else if (equals(fsType, "cgroup")) {
      kj::Vector<kj::String> controllers;
      for (auto option : split(fields[dash + 3], ',')) {
        for (auto known : V1_CONTROLLERS) {
          if (equals(option, known)) controllers.add(kj::heapString(known));
        }
      }
      if (controllers.size() == 0) continue;  // a named hierarchy, such as name=systemd
      mounts.v1.add(
          CgroupMounts::V1{controllers.releaseAsArray(), kj::mv(mountPoint), kj::mv(root)});
    }
  }
  return mounts;
}

kj::Own<CgroupDriver> newHostCgroupDriver(kj::StringPtr parent) {
  CgroupMounts mounts = parseCgroupMounts(readProcFile("mountinfo"));
  kj::String procSelfCgroup = readProcFile("cgroup");

  bool v1HasMemory = false;
  for (auto& hierarchy : mounts.v1) {
    for (auto& c : hierarchy.controllers) v1HasMemory = v1HasMemory || c == "memory";
  }

  KJ_IF_MAYBE (v2, mounts.v2) {
    kj::String available = CgroupDir(kj::heapString(v2->mountPoint))
                               .tryRead("cgroup.controllers")
                               .orDefault(kj::heapString(""));
    bool complete = hasWord(available, "cpu") && hasWord(available, "memory") &&
                    hasWord(available, "pids") && hasWord(available, "io");
    if (complete || !v1HasMemory) {
      kj::String own = KJ_REQUIRE_NONNULL(ownCgroup(procSelfCgroup, nullptr),
                                          "no unified hierarchy line in /proc/self/cgroup");
      kj::String parentPath = resolveCgroupParent(relativeTo(own, v2->mountRoot), parent);
      return kj::heap<CgroupV2Driver>(kj::heapString(v2->mountPoint), kj::mv(parentPath));
    }
  }

  KJ_REQUIRE(v1HasMemory,
             "no usable cgroup hierarchy: neither cgroup v2 nor a v1 memory "
             "hierarchy is mounted");
  auto hierarchies = KJ_MAP(mount, mounts.v1) {
    kj::String own = KJ_REQUIRE_NONNULL(
        ownCgroup(procSelfCgroup, kj::StringPtr(mount.controllers[0])),
        "no line for this controller in /proc/self/cgroup", mount.controllers[0]);
    kj::String parentPath = resolveCgroupParent(relativeTo(own, mount.mountRoot), parent);
    return CgroupV1Hierarchy{KJ_MAP(c, mount.controllers){return kj::heapString(c);
  }
  , kj::heapString(mount.mountPoint), kj::mv(parentPath)
};
};  // namespace runner::executors::cgroup
return kj::heap<CgroupV1Driver>(kj::mv(hierarchies));
}

}  // namespace runner::executors::cgroup

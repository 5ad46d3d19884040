#include "executors/cgroup/io-device.h"

#include <errno.h>
#include <kj/debug.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "executors/cgroup/cgroup-dir.h"

namespace runner::executors::cgroup {

kj::String IoDevice::number() const {
  return kj::str(major, ":", minor);
}

kj::String IoDevice::describe() const {
  return kj::str(major, ":", minor, " (", name, ")");
}

namespace {

kj::StringPtr baseName(kj::StringPtr path) {
  KJ_IF_MAYBE (slash, path.findLast('/')) {
    return path.slice(*slash + 1);
  }
  return path;
}

}  // namespace

kj::StringPtr ioLimitName(const Limits& limits) {
  if (limits.ioReadBytesPerSec && limits.ioWriteBytesPerSec) return "io-read and io-write limits";
  return limits.ioReadBytesPerSec ? "io-read limit" : "io-write limit";
}

IoDevice ioDeviceOf(kj::StringPtr path, kj::StringPtr limit, kj::StringPtr sysDevBlock) {
  struct stat info;
  if (stat(path.cStr(), &info) < 0) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      // The job's own mistake, as a missing working directory is without the limit; it is not
      // one the executor could mend (UNIMPLEMENTED: a limit it cannot apply).
      failLimit(limit,
                kj::str("the working directory ", path,
                        " does not exist (the limit throttles the disk it is on)"));
    }
    failLimit(limit, kj::str("stat ", path, ": ", strerror(error)), kj::Exception::Type::FAILED);
  }
  uint32_t major = ::major(info.st_dev);
  uint32_t minor = ::minor(info.st_dev);
  if (major == 0) {
    failLimit(limit,
              kj::str(path, " is on a filesystem without a block device (device ", major, ":",
                      minor, ", e.g. tmpfs or overlay), so there is no disk to throttle"));
  }

  kj::String link = kj::str(sysDevBlock, "/", major, ":", minor);
  char resolved[PATH_MAX];
  if (realpath(link.cStr(), resolved) == nullptr) {
    failLimit(limit, kj::str(path, " is on device ", major, ":", minor,
                             ", which is not a block device known to ", sysDevBlock));
  }
  kj::String devicePath = kj::heapString(resolved);

  // A partition's sysfs directory sits inside its disk's; the disk's "dev" file has its number.
  CgroupDir device(kj::heapString(devicePath));
  if (device.exists("partition")) {
    KJ_IF_MAYBE (slash, devicePath.findLast('/')) {
      devicePath = kj::heapString(devicePath.slice(0, *slash));
    }
    CgroupDir disk(kj::heapString(devicePath));
    kj::String number = disk.read("dev");
    KJ_IF_MAYBE (colon, number.findFirst(':')) {
      major = kj::heapString(number.slice(0, *colon)).parseAs<uint32_t>();
      kj::StringPtr rest = number.slice(*colon + 1);
      size_t end = 0;
      while (end < rest.size() && rest[end] >= '0' && rest[end] <= '9') ++end;
      minor = kj::heapString(rest.slice(0, end)).parseAs<uint32_t>();
    } else {
      KJ_FAIL_ASSERT("unexpected content of a sysfs dev file", devicePath, number);
    }
  }
  return IoDevice{major, minor, kj::heapString(baseName(devicePath))};
}

}  // namespace runner::executors::cgroup

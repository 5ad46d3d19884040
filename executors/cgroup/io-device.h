#pragma once
// The block device IO limits apply to: the disk holding a job's working directory.

#include <kj/string.h>
#include <stdint.h>

#include "executors/executor.h"

namespace runner::executors::cgroup {

struct IoDevice {
  uint32_t major = 0;
  uint32_t minor = 0;
  // The kernel's name for it, e.g. "vda" or "nvme0n1".
  kj::String name;

  // "MAJOR:MINOR", as io.max and blkio.throttle.* want it.
  kj::String number() const;
  // "MAJOR:MINOR (name)", for Placement::ioDevice.
  kj::String describe() const;
};

// How errors name the IO limits set in `limits`, after runctl's flags: "io-read limit",
// "io-write limit" or "io-read and io-write limits".
kj::StringPtr ioLimitName(const Limits& limits);

// The whole-disk block device holding `path`: stat(path).st_dev, and when that is a partition
// its parent disk (io.max and blkio throttle at the disk, where the request queue is). Throws,
// naming `limit` (see ioLimitName()) and the path, when the filesystem is not on a block device
// (tmpfs, overlay, btrfs subvolumes: major 0) or the device is unknown to `sysDevBlock`.
IoDevice ioDeviceOf(kj::StringPtr path, kj::StringPtr limit,
                    kj::StringPtr sysDevBlock = "/sys/dev/block");

}  // namespace runner::executors::cgroup

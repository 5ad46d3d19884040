#pragma once
// An ext4 file system in a temporary image file, loop-mounted for a test: frozen (fsfreeze) to
// stand for a disk that does not answer, or shut down to stand for a crash.

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/string.h>
#include <linux/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

// From linux/ext4.h (not installed): shut the file system down, as on a crash. With
// NOLOGFLUSH, neither dirty pages nor the journal are written: what was not synced is lost.
#ifndef EXT4_IOC_SHUTDOWN
#define EXT4_IOC_SHUTDOWN _IOR('X', 125, __u32)
#endif
#define EXT4_GOING_FLAGS_NOLOGFLUSH 0x2

namespace runner::testing {

// Runs a shell command quietly (Bazel's test environment has no /sbin in PATH).
inline bool run(kj::StringPtr command) {
  auto line = kj::str("PATH=/usr/sbin:/usr/bin:/sbin:/bin; ", command, " >/dev/null 2>&1");
  return system(line.cStr()) == 0;
}

// An ext4 file system in a temporary image file, loop-mounted on a directory of its own.
class LoopDisk {
 public:
  // Made under /var/lib/runner-tests (jobs cannot see /tmp). Sets `failure` when the host
  // cannot make or mount one.
  LoopDisk() {
    mkdir("/var/lib/runner-tests", 0755);
    auto tmpl = kj::str("/var/lib/runner-tests/disk.XXXXXX");
    KJ_ASSERT(mkdtemp(tmpl.begin()) != nullptr, strerror(errno));
    dir = kj::mv(tmpl);
    KJ_SYSCALL(chmod(dir.cStr(), 0755));
    image = kj::str(dir, "/image");
    mountPoint = kj::str(dir, "/mnt");
    KJ_SYSCALL(mkdir(mountPoint.cStr(), 0755));
    if (!run(kj::str("truncate -s 64M ", image)) || !run(kj::str("mkfs.ext4 -q -F ", image))) {
      failure = kj::str("cannot make an ext4 image (truncate, mkfs.ext4)");
    } else if (!mount()) {
      failure = kj::str("cannot loop-mount an ext4 image here (losetup, mount)");
    }
  }
  ~LoopDisk() noexcept(false) {
    if (mounted) {
      run(kj::str("fsfreeze -u ", mountPoint));
      unmount();
    }
    run(kj::str("rm -rf ", dir));
  }
  KJ_DISALLOW_COPY(LoopDisk);

  // Each mount on a loop device of its own: a file system unmounted here may live on in a mount
  // namespace made meanwhile (by any process on the host), and `mount -o loop` would reuse its
  // device, and so its superblock.
  bool mount() {
    FILE* out = popen(
        kj::str("PATH=/usr/sbin:/usr/bin:/sbin:/bin; losetup -f --show ", image, " 2>/dev/null")
            .cStr(),
        "r");
    if (out == nullptr) return false;
    char line[256] = {};
    bool read = fgets(line, sizeof(line), out) != nullptr;
    if (pclose(out) != 0 || !read) return false;
    line[strcspn(line, "\n")] = '\0';
    device = kj::str(line);
    mounted = run(kj::str("mount ", device, " ", mountPoint));
    if (!mounted) run(kj::str("losetup -d ", device));
    return mounted;
  }
  void unmount() {
    KJ_ASSERT(run(kj::str("umount ", mountPoint)), "umount failed", mountPoint);
    // Fails while another namespace still holds the file system; it is detached with it then.
    run(kj::str("losetup -d ", device));
    mounted = false;
  }
  void freeze() { KJ_ASSERT(run(kj::str("fsfreeze -f ", mountPoint)), mountPoint); }
  void thaw() { KJ_ASSERT(run(kj::str("fsfreeze -u ", mountPoint)), mountPoint); }

  // Shuts the file system down without writing anything more to the disk: whatever is not on
  // disk yet (not synced) is lost, as in a power cut.
  void crash() {
    int fd;
    KJ_SYSCALL(fd = open(mountPoint.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    KJ_DEFER(close(fd));
    uint32_t flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
    KJ_SYSCALL(ioctl(fd, EXT4_IOC_SHUTDOWN, &flags));
  }

  kj::String dir;
  kj::String image;
  kj::String mountPoint;
  kj::Maybe<kj::String> failure;

 private:
  kj::String device;
  bool mounted = false;
};

}  // namespace runner::testing

#include "runner/homes.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace runner {
namespace {

constexpr uint32_t UID = 2000999990;
constexpr uint32_t GID = 2000999991;

// A directory of homes as runnerd and runner-supervisor make it: root's, mode 0711.
class Homes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "homes are given to other uids: needs root";
    char pattern[] = "/var/tmp/homes-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr) << strerror(errno);
    dir = pattern;
    homes = dir + "/homes";
    ASSERT_EQ(mkdir(homes.c_str(), 0711), 0);
  }

  void TearDown() override {
    if (!dir.empty()) EXPECT_EQ(system(("rm -rf '" + dir + "'").c_str()), 0);
  }

  // The description of what `func` threw, or "" when it did not throw.
  template <typename Func>
  static std::string failure(Func&& func) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
      return e->getDescription().cStr();
    }
    return "";
  }

  std::string dir;
  std::string homes;
};

TEST_F(Homes, AHomeIsMadePrivateAndOwnedByItsUidAndGid) {
  auto fd = openHomesDirectory(homes.c_str(), "--homes");
  makeHome(fd.get(), homes.c_str(), UID, GID);
  struct stat st;
  ASSERT_EQ(lstat((homes + "/" + std::to_string(UID)).c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, UID);
  EXPECT_EQ(st.st_gid, GID);
  // A second start finds it in place.
  EXPECT_EQ(failure([&]() { makeHome(fd.get(), homes.c_str(), UID, GID); }), "");
}

TEST_F(Homes, AHomeOfSomeoneElseIsRefused) {
  auto fd = openHomesDirectory(homes.c_str(), "--homes");
  auto home = homes + "/" + std::to_string(UID);
  ASSERT_EQ(mkdir(home.c_str(), 0700), 0);  // root's
  auto error = failure([&]() { makeHome(fd.get(), homes.c_str(), UID, GID); });
  EXPECT_EQ(error, "the home " + home + " is not a directory owned by uid " + std::to_string(UID) +
                       " and gid " + std::to_string(GID) + "; refusing to use it");
  // A symlink in its place is not followed.
  ASSERT_EQ(rmdir(home.c_str()), 0);
  ASSERT_EQ(symlink("/etc", home.c_str()), 0);
  EXPECT_NE(failure([&]() { makeHome(fd.get(), homes.c_str(), UID, GID); }), "");
  struct stat st;
  ASSERT_EQ(stat("/etc", &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(Homes, ADirectoryOthersMayWriteIsRefused) {
  ASSERT_EQ(chmod(homes.c_str(), 0777), 0);
  EXPECT_EQ(failure([&]() { openHomesDirectory(homes.c_str(), "--homes"); }),
            "--homes " + homes +
                " must be owned by root and writable by nobody else (it is "
                "owned by uid 0, mode 0777)");
  ASSERT_EQ(chmod(homes.c_str(), 0711), 0);
  ASSERT_EQ(chown(homes.c_str(), 65534, 65534), 0);
  EXPECT_NE(failure([&]() { openHomesDirectory(homes.c_str(), "--homes"); }), "");
}

}  // namespace
}  // namespace runner

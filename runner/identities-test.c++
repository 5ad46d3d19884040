#include "runner/identities.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "runner/store.h"

namespace runner {
namespace {

constexpr UidRange RANGE = {2100000000u, 2100000002u};
// Wide enough for every owner a test makes.
constexpr UidRange WIDE = {2100000000u, 2100000009u};

HostIdFiles files(kj::StringPtr passwd, kj::StringPtr group = "", kj::StringPtr subuid = "",
                  kj::StringPtr subgid = "") {
  return HostIdFiles{kj::str(passwd), kj::str(group), kj::str(subuid), kj::str(subgid)};
}

std::string conflict(UidRange range, const HostIdFiles& host) {
  KJ_IF_MAYBE (text, findUidRangeConflict(range, host)) {
    return text->cStr();
  }
  return "";
}

TEST(UidRange, ParsesFirstAndLast) {
  auto range = KJ_ASSERT_NONNULL(parseUidRange("2000000000-2000999999"));
  EXPECT_EQ(range.first, 2000000000u);
  EXPECT_EQ(range.last, 2000999999u);
  auto single = KJ_ASSERT_NONNULL(parseUidRange("70000-70000"));
  EXPECT_TRUE(single.contains(70000));
  EXPECT_FALSE(single.contains(70001));
}

TEST(UidRange, RefusesWhatIsNotARangeOfUsableIds) {
  for (auto text : {"", "5", "-5", "5-", "10-5", "0-10", "a-b", "1-2-3", " 1-2", "1-4294967296",
                    "65000-66000", "4294967290-4294967295", "+1-2"}) {
    EXPECT_TRUE(parseUidRange(text) == nullptr) << text;
  }
}

TEST(UidRange, TheDefaultIsClearOfThisHost) {
  EXPECT_EQ(conflict(DEFAULT_UID_RANGE, readHostIdFiles()), "");
}

TEST(UidRange, AnOverlapIsNamed) {
  auto passwd = "root:x:0:0::/root:/bin/sh\n# comment\nalice:x:70005:70005::/home/a:/bin/sh\n";
  EXPECT_EQ(conflict({70000, 70010}, files(passwd)),
            "the uid range 70000-70010 overlaps the account alice (70005) in /etc/passwd");
  EXPECT_EQ(conflict({70006, 70010}, files(passwd)), "");
  EXPECT_EQ(conflict({70000, 70010}, files("", "staff:x:70010:\n")),
            "the uid range 70000-70010 overlaps the group staff (70010) in /etc/group");
  EXPECT_EQ(conflict({100000, 100005}, files("", "", "bob:165536:65536\ncarol:99990:11\n")),
            "the uid range 100000-100005 overlaps the subordinate uids of carol (99990-100000) in "
            "/etc/subuid");
  EXPECT_EQ(conflict({100001, 100005}, files("", "", "carol:99990:11\n")), "");
  EXPECT_EQ(conflict({200000, 200000}, files("", "", "", "dave:100000:131072\n")),
            "the uid range 200000-200000 overlaps the subordinate gids of dave (100000-231071) in "
            "/etc/subgid");
  EXPECT_EQ(conflict({65000, 70000}, files("")),
            "the uid range 65000-70000 overlaps systemd's dynamic users (61184-65519)");
  EXPECT_EQ(conflict({65520, 70000}, files("")), "");
}

TEST(UidRangeRegistry, ALiveRunnerdsRangeIsNotClaimedTwice) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char pattern[] = "/var/tmp/uid-range-registry.XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  auto registry = kj::str(pattern, "/ranges");
  {
    auto first = claimUidRange({3000000000u, 3000000099u}, "/srv/one", registry);
    struct stat info;
    ASSERT_EQ(fstat(first.get(), &info), 0);
    EXPECT_EQ(info.st_mode & 07777, 0600u) << "nobody else may lock it";
    auto overlap = kj::runCatchingExceptions(
        [&]() { claimUidRange({3000000050u, 3000000199u}, "/srv/two", registry); });
    EXPECT_EQ(KJ_ASSERT_NONNULL(overlap).getDescription(),
              "the uid range 3000000050-3000000199 overlaps 3000000000-3000000099, which the "
              "runnerd with state directory /srv/one is using; give each runnerd of a host a "
              "--uid-range of its own");
    // A disjoint range is fine.
    auto beside = claimUidRange({3000000100u, 3000000199u}, "/srv/two", registry);
  }
  // Both gone: their claims are stale, and the range can be claimed again; stale claims are
  // swept away.
  auto again = claimUidRange({3000000050u, 3000000150u}, "/srv/three", registry);
  auto fs = kj::newDiskFilesystem();
  auto names = fs->getRoot().openSubdir(kj::Path::parse(registry.slice(1)))->listNames();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], ".lock");
  EXPECT_EQ(names[1], "3000000050-3000000150");
  EXPECT_EQ(system(kj::str("rm -rf ", pattern).cStr()), 0);
}

TEST(UserNames, PortableNamesOnly) {
  for (auto name : {"alice", "a", "_svc", "build-bot", "Bob.Smith", "machine$", "x123"}) {
    EXPECT_TRUE(isPortableUserName(name)) << name;
  }
  for (auto name : {"", "1alice", "-alice", ".alice", "al ice", "al/ice", "al:ice", "$",
                    "a$b", "alice\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "é"}) {
    EXPECT_FALSE(isPortableUserName(name)) << name;
  }
}

// A state directory with a store and a homes directory, as runnerd makes them.
class Dynamic : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "dynamic identities chown homes: needs root";
    char pattern[] = "/var/tmp/identities-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr) << strerror(errno);
    dir = pattern;
    homes = dir + "/homes";
    ASSERT_EQ(mkdir(homes.c_str(), 0711), 0);
    open();
  }

  void TearDown() override {
    opened.reset();
    if (!dir.empty()) EXPECT_EQ(system(("rm -rf '" + dir + "'").c_str()), 0);
  }

  // (Re)opens the store and the identities on the same directory, as a restarted runnerd does.
  void open(UidRange range = RANGE) {
    opened.reset();
    opened = std::make_unique<Opened>();
    opened->store = Store::open(kj::str(dir.c_str(), "/runner.db"));
    opened->identities =
        newDynamicIdentities(*opened->store, range, kj::str(homes.c_str()), opened->log);
  }

  Store& store() { return *opened->store; }
  OwnerIdentities& identities() { return *opened->identities; }

  std::string dir;
  std::string homes;

 private:
  struct Opened {
    EventLog log{STDERR_FILENO};
    kj::Own<Store> store;
    kj::Own<OwnerIdentities> identities;
  };
  std::unique_ptr<Opened> opened;
};

TEST_F(Dynamic, EachOwnerGetsAUidAndAPrivateHome) {
  auto alice = identities().forOwner("alice");
  auto bob = identities().forOwner("bob");
  EXPECT_EQ(alice.uid, RANGE.first);
  EXPECT_EQ(bob.uid, RANGE.first + 1);
  EXPECT_EQ(alice.gid, alice.uid);
  EXPECT_EQ(alice.supplementaryGroups.size(), 0u);
  EXPECT_EQ(alice.userName, "alice");
  EXPECT_EQ(alice.homeDir, kj::str(homes.c_str(), "/", alice.uid));

  struct stat info;
  ASSERT_EQ(stat(alice.homeDir.cStr(), &info), 0);
  EXPECT_TRUE(S_ISDIR(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0700u);
  EXPECT_EQ(info.st_uid, alice.uid);
  EXPECT_EQ(info.st_gid, alice.gid);

  // The same owner, the same identity.
  EXPECT_EQ(identities().forOwner("alice").uid, alice.uid);
}

TEST_F(Dynamic, TheMappingSurvivesARestart) {
  auto alice = identities().forOwner("alice").uid;
  auto bob = identities().forOwner("bob").uid;
  open();
  // In the other order this time: the store decides, not the order of arrival.
  EXPECT_EQ(identities().forOwner("bob").uid, bob);
  EXPECT_EQ(identities().forOwner("alice").uid, alice);
  EXPECT_EQ(KJ_ASSERT_NONNULL(store().ownerUid("alice")), alice);
}

TEST_F(Dynamic, ANameThatIsNoUserNameGetsAGeneratedOne) {
  open(WIDE);
  auto odd = identities().forOwner("Alice Smith, ops");
  EXPECT_EQ(odd.userName, kj::str("runner-", odd.uid));
  // Nor does an owner take the name of a local account, or of a made-up one.
  auto root = identities().forOwner("root");
  EXPECT_EQ(root.userName, kj::str("runner-", root.uid));
  auto madeUp = identities().forOwner(kj::str("runner-", odd.uid));
  EXPECT_EQ(madeUp.userName, kj::str("runner-", madeUp.uid));
  EXPECT_NE(madeUp.uid, odd.uid);
}

TEST_F(Dynamic, ARangeThatRunsOutFailsWithOneLineAndCreatesNothing) {
  open({RANGE.first, RANGE.first});
  identities().forOwner("alice");
  auto exception = kj::runCatchingExceptions([&]() { identities().forOwner("bob"); });
  auto& e = KJ_ASSERT_NONNULL(exception);
  EXPECT_EQ(e.getType(), kj::Exception::Type::OVERLOADED);
  EXPECT_EQ(e.getDescription(),
            kj::str("limit: no uid is left for a new owner in runnerd's uid range ", RANGE.first,
                    "-", RANGE.first, " (--uid-range)"));
  EXPECT_TRUE(store().ownerUid("bob") == nullptr);
  // Only alice's home.
  auto fs = kj::newDiskFilesystem();
  auto listing = fs->getRoot().openSubdir(kj::Path::parse(homes.substr(1)))->listNames();
  EXPECT_EQ(listing.size(), 1u);

  // A wider range later serves bob, and alice keeps hers.
  open();
  EXPECT_EQ(identities().forOwner("bob").uid, RANGE.first + 1);
  EXPECT_EQ(identities().forOwner("alice").uid, RANGE.first);
}

TEST_F(Dynamic, AUidWhoseHomeExistsWithoutAnOwnerIsNeverGiven) {
  // A home left by a store that was replaced: its files belong to someone else.
  auto stray = homes + "/" + std::to_string(RANGE.first);
  ASSERT_EQ(mkdir(stray.c_str(), 0700), 0);
  ASSERT_EQ(chown(stray.c_str(), RANGE.first, RANGE.first), 0);
  EXPECT_EQ(identities().forOwner("alice").uid, RANGE.first + 1);
  open();
  EXPECT_EQ(identities().forOwner("bob").uid, RANGE.first + 2);
  auto rows = store().ownerUids();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].uid, RANGE.first);
  EXPECT_TRUE(rows[0].owner == nullptr) << "retired";
}

TEST_F(Dynamic, AHomeTakenOverByAnotherUidIsRefused) {
  auto alice = identities().forOwner("alice");
  ASSERT_EQ(chown(alice.homeDir.cStr(), 12345, 12345), 0);
  open();
  auto exception = kj::runCatchingExceptions([&]() { identities().forOwner("alice"); });
  auto& e = KJ_ASSERT_NONNULL(exception);
  EXPECT_EQ(e.getDescription(), kj::str("the home ", alice.homeDir, " is not a directory owned by uid ",
                                        alice.uid, " and gid ", alice.uid, "; refusing to use it"));
}

class Accounts : public ::testing::Test {
 protected:
  std::string refusal(kj::StringPtr owner, uint32_t minUid = 1000) {
    auto identities = newAccountIdentities(minUid);
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { identities->forOwner(owner); })) {
      return e->getDescription().cStr();
    }
    return "";
  }
};

TEST_F(Accounts, AnOwnerRunsAsTheAccountOfTheSameName) {
  auto pw = getpwnam("runner-jobs");
  if (pw == nullptr) GTEST_SKIP() << "no runner-jobs account (scripts/install-deps creates it)";
  auto credentials = newAccountIdentities(100)->forOwner("runner-jobs");
  EXPECT_EQ(credentials.uid, pw->pw_uid);
  EXPECT_EQ(credentials.gid, pw->pw_gid);
  EXPECT_EQ(credentials.userName, "runner-jobs");
  EXPECT_EQ(credentials.homeDir, pw->pw_dir);
}

TEST_F(Accounts, RootNobodyLowUidsAndStrangersAreRefused) {
  EXPECT_EQ(refusal("root"), "permission denied: refusing to run a job as 'root': it is root");
  EXPECT_EQ(refusal("daemon"),
            "permission denied: refusing to run a job as 'daemon': its uid 1 is below --min-uid "
            "1000");
  EXPECT_EQ(refusal("nobody"),
            "permission denied: refusing to run a job as 'nobody': its uid 65534 is nobody's");
  EXPECT_EQ(refusal("no-such-account-here"),
            "permission denied: there is no local account 'no-such-account-here' to run the job "
            "as (runnerd --users accounts)");
  EXPECT_EQ(refusal("al ice"),
            "permission denied: the owner name is not a valid local user name, so it has no "
            "account to run as (runnerd --users accounts)");
  if (getpwnam("runner-jobs") != nullptr) {
    EXPECT_NE(refusal("runner-jobs"), "") << "a system account, below 1000";
  }
}

}  // namespace
}  // namespace runner

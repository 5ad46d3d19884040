#include "runner/identities.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <kj/map.h>
#include <kj/mutex.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executors/threads.h"
#include "runner/credentials.h"
#include "runner/homes.h"
#include "runner/store.h"
#include "runner/user-error.h"

namespace runner {

namespace {

// The id that means "no change" to setresuid(), and the 16-bit one of old interfaces.
constexpr uint32_t NO_ID = 0xffffffffu;
constexpr uint32_t NO_ID_16 = 0xffffu;

kj::Maybe<uint32_t> parseId(kj::ArrayPtr<const char> text) {
  if (text.size() == 0 || text.size() > 10) return nullptr;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return nullptr;
    value = value * 10 + (c - '0');
  }
  if (value > NO_ID) return nullptr;
  return uint32_t(value);
}

kj::Vector<kj::ArrayPtr<const char>> split(kj::ArrayPtr<const char> text, char separator) {
  kj::Vector<kj::ArrayPtr<const char>> parts;
  const char* start = text.begin();
  for (const char* p = text.begin(); p != text.end(); ++p) {
    if (*p == separator) {
      parts.add(kj::arrayPtr(start, p));
      start = p + 1;
    }
  }
  parts.add(kj::arrayPtr(start, text.end()));
  return parts;
}

kj::String readFileOrEmpty(kj::StringPtr path) {
  auto fs = kj::newDiskFilesystem();
  KJ_IF_MAYBE (file, fs->getRoot().tryOpenFile(kj::Path::parse(path.slice(1)))) {
    return (*file)->readAllText();
  }
  return kj::str();
}

// The first line of a colon-separated id file (passwd, group) whose field `idField` lies in
// `range`, as "NAME (ID)".
kj::Maybe<kj::String> findIdInTable(UidRange range, kj::StringPtr text, size_t idField) {
  for (auto line : split(text, '\n')) {
    if (line.size() == 0 || line[0] == '#') continue;
    auto fields = split(line, ':');
    if (fields.size() <= idField) continue;
    KJ_IF_MAYBE (id, parseId(fields[idField])) {
      if (range.contains(*id)) return kj::str(fields[0], " (", *id, ")");
    }
  }
  return nullptr;
}

// The first "NAME:START:COUNT" line of a subordinate id file whose range meets `range`.
kj::Maybe<kj::String> findSubordinateOverlap(UidRange range, kj::StringPtr text) {
  for (auto line : split(text, '\n')) {
    if (line.size() == 0 || line[0] == '#') continue;
    auto fields = split(line, ':');
    if (fields.size() < 3) continue;
    auto start = parseId(fields[1]);
    auto count = parseId(fields[2]);
    KJ_IF_MAYBE (s, start) {
      KJ_IF_MAYBE (c, count) {
        if (*c == 0) continue;
        uint64_t end = uint64_t(*s) + *c - 1;
        if (*s <= range.last && end >= range.first) {
          return kj::str(fields[0], " (", *s, "-", end, ")");
        }
      }
    }
  }
  return nullptr;
}

kj::String describeRange(UidRange range) {
  return kj::str(range.first, "-", range.last);
}

// ---------------------------------------------------------------------------------------------

class SharedIdentity final : public OwnerIdentities {
 public:
  explicit SharedIdentity(executors::Credentials credentials) : credentials(kj::mv(credentials)) {}

  executors::Credentials forOwner(kj::StringPtr owner) override {
    return cloneCredentials(credentials);
  }

  kj::String describe() const override {
    return kj::str("shared user ", credentials.userName, " (", credentials.uid, ")");
  }

 private:
  executors::Credentials credentials;
};

class AccountIdentities final : public OwnerIdentities {
 public:
  explicit AccountIdentities(uint32_t minUid) : minUid(minUid) {}

  executors::Credentials forOwner(kj::StringPtr owner) override {
    if (!isPortableUserName(owner)) {
      throwUserError(ErrorKind::PERMISSION_DENIED,
                     "the owner name is not a valid local user name, so it has no account to run "
                     "as (runnerd --users accounts)");
    }
    struct passwd pw;
    struct passwd* found = nullptr;
    char buffer[16384];
    int error = getpwnam_r(owner.cStr(), &pw, buffer, sizeof(buffer), &found);
    if (found == nullptr) {
      if (error != 0 && error != ENOENT && error != ESRCH) {
        throwUserError(ErrorKind::UNAVAILABLE,
                       kj::str("cannot look up the account '", owner, "': ", strerror(error)));
      }
      throwUserError(ErrorKind::PERMISSION_DENIED,
                     kj::str("there is no local account '", owner,
                             "' to run the job as (runnerd --users accounts)"));
    }
    if (pw.pw_uid == 0 || pw.pw_gid == 0) {
      throwUserError(ErrorKind::PERMISSION_DENIED,
                     kj::str("refusing to run a job as '", owner, "': it is root"));
    }
    if (pw.pw_uid < minUid || pw.pw_uid == NO_ID_16 - 1) {
      throwUserError(ErrorKind::PERMISSION_DENIED,
                     kj::str("refusing to run a job as '", owner, "': its uid ", pw.pw_uid,
                             pw.pw_uid < minUid ? kj::str(" is below --min-uid ", minUid)
                                                : kj::str(" is nobody's")));
    }
    auto credentials = credentialsOf(pw);
    for (gid_t group : credentials.supplementaryGroups) {
      if (group == 0) {
        throwUserError(ErrorKind::PERMISSION_DENIED, kj::str("refusing to run a job as '", owner,
                                                             "': it is a member of group root"));
      }
    }
    return credentials;
  }

  kj::String describe() const override { return kj::str("local accounts (uid >= ", minUid, ")"); }

 private:
  uint32_t minUid;
};

class DynamicIdentities final : public OwnerIdentities {
 public:
  DynamicIdentities(Store& store, UidRange range, kj::String homesDir, EventLog& log,
                    bool makeHomes)
      : store(store), range(range), homesDir(kj::mv(homesDir)), log(log), makeHomes(makeHomes) {
    int fd;
    // O_PATH: an unprivileged runnerd may only pass through the homes (mode 0711), not list them.
    KJ_SYSCALL(fd = open(this->homesDir.cStr(), O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW),
               this->homesDir);
    homes = kj::AutoCloseFd(fd);
  }

  ~DynamicIdentities() noexcept(false) {
    state.lockExclusive()->stopping = true;
    thread = nullptr;  // joins once what was asked is done
  }

  executors::Credentials forOwner(kj::StringPtr owner) override {
    KJ_IF_MAYBE (known, ready.find(owner)) {
      return credentialsFor(known->uid, known->userName);
    }
    kj::Vector<kj::String> logLines;
    auto known = assign(owner, logLines);
    for (auto& line : logLines) log(line);
    auto credentials = credentialsFor(known.uid, known.userName);
    ready.upsert(kj::str(owner), kj::mv(known), [](Known&, Known&&) {});
    return credentials;
  }

  kj::Promise<void> prepare(kj::StringPtr owner) override {
    if (ready.find(owner) != nullptr) return kj::READY_NOW;
    // Two first starts of one owner may both ask: assignment and home are idempotent.
    auto work = kj::heap<Preparation>();
    work->owner = kj::str(owner);
    auto paf = kj::newPromiseAndCrossThreadFulfiller<kj::Own<Preparation>>();
    state.lockExclusive()->queue.add(Queued{kj::mv(work), kj::mv(paf.fulfiller)});
    return paf.promise.then([this](kj::Own<Preparation> work) {
      // Back on the event loop.
      for (auto& line : work->logLines) log(line);
      KJ_IF_MAYBE (e, work->error) {
        kj::throwFatalException(kj::mv(*e));
      }
      ready.upsert(kj::mv(work->owner), kj::mv(KJ_ASSERT_NONNULL(work->known)),
                   [](Known&, Known&&) {});
    });
  }

  bool homesMadeAtLaunch() const override { return !makeHomes; }

  kj::String describe() const override {
    return kj::str("dynamic uids ", describeRange(range), ", homes in ", homesDir);
  }

 private:
  Store& store;
  UidRange range;
  // False when the supervisor makes each home as it launches the job (runnerd is not root).
  bool makeHomes;
  kj::String homesDir;
  EventLog& log;
  kj::AutoCloseFd homes;
  // Owners whose uid and home are known to be in place.
  struct Known {
    uint32_t uid;
    kj::String userName;
  };
  kj::HashMap<kj::String, Known> ready;

  // A new owner's uid and home, made on the thread for prepare(), and handed back to the loop.
  struct Preparation {
    kj::String owner;
    kj::Maybe<Known> known;
    kj::Maybe<kj::Exception> error;
    kj::Vector<kj::String> logLines;
  };
  struct Queued {
    kj::Own<Preparation> work;
    kj::Own<kj::CrossThreadPromiseFulfiller<kj::Own<Preparation>>> done;
  };
  struct State {
    kj::Vector<Queued> queue;
    bool stopping = false;
  };
  kj::MutexGuarded<State> state;
  kj::Own<kj::Thread> thread = executors::startQuietThread([this]() { run(); });

  void run() {
    for (;;) {
      kj::Vector<Queued> batch;
      {
        auto lock = state.lockExclusive();
        lock.wait([](const State& state) { return state.stopping || !state.queue.empty(); });
        if (lock->queue.empty()) return;  // stopping
        batch = kj::mv(lock->queue);
        lock->queue = kj::Vector<Queued>();
      }
      for (auto& queued : batch) {
        auto& work = *queued.work;
        KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                            [&]() { work.known = assign(work.owner, work.logLines); })) {
          work.error = kj::mv(*e);
        }
        queued.done->fulfill(kj::mv(queued.work));
      }
    }
  }

  // The uid of `owner`, assigned now if it has none (a synced write), and its home, made if
  // missing. Runs on the thread, or on the loop for forOwner() without prepare(): what is to be
  // logged goes to `logLines`. The store serialises its own calls.
  Known assign(kj::StringPtr owner, kj::Vector<kj::String>& logLines) {
    if (memchr(owner.begin(), '\0', owner.size()) != nullptr) {
      throwUserError(ErrorKind::INVALID, "the owner name contains a NUL byte");
    }
    auto assigned = store.assignOwnerUid(owner, range.first, range.last, [&](uint32_t candidate) {
      struct stat st;
      auto name = kj::str(candidate);
      if (fstatat(homes.get(), name.cStr(), &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
        return true;
      }
      logLines.add(kj::str("uid ", candidate, " retired: ", homesDir, "/", candidate,
                           " exists but no owner is assigned to it"));
      return false;
    });
    uint32_t uid;
    KJ_IF_MAYBE (u, assigned) {
      uid = *u;
    } else {
      logLines.add(kj::str("cannot give owner ", owner, " a uid: every uid of ",
                           describeRange(range), " is taken"));
      throwUserError(ErrorKind::LIMIT,
                     kj::str("no uid is left for a new owner in runnerd's uid range ",
                             describeRange(range), " (--uid-range)"));
    }
    if (makeHomes) makeHome(uid);
    return Known{uid, userNameFor(owner, uid)};
  }

  executors::Credentials credentialsFor(uint32_t uid, kj::StringPtr userName) {
    executors::Credentials credentials;
    credentials.uid = uid;
    credentials.gid = uid;
    credentials.userName = kj::str(userName);
    credentials.homeDir = kj::str(homesDir, '/', uid);
    return credentials;
  }

  // USER and LOGNAME: the owner's name, unless it is no portable user name, the name of a local
  // account (a job of owner "root" is not root), or one of the names made up here.
  static kj::String userNameFor(kj::StringPtr owner, uint32_t uid) {
    bool madeUp = owner.startsWith("runner-");
    for (size_t i = strlen("runner-"); madeUp && i < owner.size(); ++i) {
      madeUp = owner[i] >= '0' && owner[i] <= '9';
    }
    struct passwd pw;
    struct passwd* found = nullptr;
    char buffer[16384];
    bool account = isPortableUserName(owner) &&
                   getpwnam_r(owner.cStr(), &pw, buffer, sizeof(buffer), &found) == 0 &&
                   found != nullptr;
    if (!isPortableUserName(owner) || madeUp || account) return kj::str("runner-", uid);
    return kj::str(owner);
  }

  // Creates <homes>/<uid> (0700, owned by uid:uid) or checks the one that is there. `homes` is
  // root's and not writable by anyone else, so nothing can race these calls with a symlink.
  void makeHome(uint32_t uid) { runner::makeHome(homes.get(), homesDir, uid, uid); }
};

}  // namespace

kj::Maybe<UidRange> parseUidRange(kj::StringPtr text) {
  auto parts = split(text, '-');
  if (parts.size() != 2) return nullptr;
  auto first = parseId(parts[0]);
  auto last = parseId(parts[1]);
  KJ_IF_MAYBE (f, first) {
    KJ_IF_MAYBE (l, last) {
      UidRange range{*f, *l};
      if (*f == 0 || *f > *l || range.contains(NO_ID) || range.contains(NO_ID_16)) return nullptr;
      return range;
    }
  }
  return nullptr;
}

HostIdFiles readHostIdFiles() {
  return HostIdFiles{readFileOrEmpty("/etc/passwd"), readFileOrEmpty("/etc/group"),
                     readFileOrEmpty("/etc/subuid"), readFileOrEmpty("/etc/subgid")};
}

kj::Maybe<kj::String> findUidRangeConflict(UidRange range, const HostIdFiles& files) {
  auto where = kj::str("the uid range ", describeRange(range));
  KJ_IF_MAYBE (account, findIdInTable(range, files.passwd, 2)) {
    return kj::str(where, " overlaps the account ", *account, " in /etc/passwd");
  }
  KJ_IF_MAYBE (group, findIdInTable(range, files.group, 2)) {
    return kj::str(where, " overlaps the group ", *group, " in /etc/group");
  }
  KJ_IF_MAYBE (sub, findSubordinateOverlap(range, files.subuid)) {
    return kj::str(where, " overlaps the subordinate uids of ", *sub, " in /etc/subuid");
  }
  KJ_IF_MAYBE (sub, findSubordinateOverlap(range, files.subgid)) {
    return kj::str(where, " overlaps the subordinate gids of ", *sub, " in /etc/subgid");
  }
  if (range.first <= SYSTEMD_DYNAMIC_USERS.last && range.last >= SYSTEMD_DYNAMIC_USERS.first) {
    return kj::str(where, " overlaps systemd's dynamic users (",
                   describeRange(SYSTEMD_DYNAMIC_USERS), ")");
  }
  return nullptr;
}

kj::AutoCloseFd claimUidRange(UidRange range, kj::StringPtr stateDir, kj::StringPtr registry) {
  for (size_t i = 1; i <= registry.size(); i++) {
    if (i == registry.size() || registry[i] == '/') {
      auto prefix = kj::str(registry.slice(0, i));
      if (mkdir(prefix.cStr(), 0755) < 0 && errno != EEXIST) {
        KJ_FAIL_REQUIRE(kj::str("cannot create ", prefix, ": ", strerror(errno)));
      }
    }
  }
  int fd;
  KJ_SYSCALL(fd = open(registry.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), registry);
  kj::AutoCloseFd dir(fd);
  // One runnerd at a time looks and claims.
  KJ_SYSCALL(fd = openat(dir.get(), ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600), registry);
  kj::AutoCloseFd guard(fd);
  KJ_SYSCALL(flock(guard.get(), LOCK_EX), registry);

  auto fs = kj::newDiskFilesystem();
  auto names = fs->getRoot().openSubdir(kj::Path::parse(registry.slice(1)))->listNames();
  for (auto& name : names) {
    KJ_IF_MAYBE (other, parseUidRange(name)) {
      bool overlaps = other->last >= range.first && other->first <= range.last;
      KJ_SYSCALL(fd = openat(dir.get(), name.cStr(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW),
                 registry, name);
      kj::AutoCloseFd claim(fd);
      bool live = flock(claim.get(), LOCK_EX | LOCK_NB) < 0;
      if (live && !overlaps) continue;
      if (live) {
        char owner[4096] = {};
        ssize_t n = pread(claim.get(), owner, sizeof(owner) - 1, 0);
        if (n < 0) n = 0;
        KJ_FAIL_REQUIRE(kj::str("the uid range ", describeRange(range), " overlaps ", name,
                                ", which the runnerd with state directory ",
                                kj::heapString(owner, n), " is using; give each runnerd of a "
                                "host a --uid-range of its own"));
      }
      // Its runnerd is gone.
      unlinkat(dir.get(), name.cStr(), 0);
    }
  }

  auto name = describeRange(range);
  // Root's alone: whoever could open a claim could lock it and make it look alive.
  KJ_SYSCALL(fd = openat(dir.get(), name.cStr(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600),
             registry, name);
  kj::AutoCloseFd claim(fd);
  KJ_SYSCALL(fchmod(claim.get(), 0600), registry, name);
  KJ_SYSCALL(flock(claim.get(), LOCK_EX | LOCK_NB), registry, name);
  KJ_SYSCALL(ftruncate(claim.get(), 0));
  kj::FdOutputStream(claim.get()).write(stateDir.begin(), stateDir.size());
  return claim;
}

bool isPortableUserName(kj::StringPtr name) {
  if (name.size() == 0 || name.size() > 32) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool other = (c >= '0' && c <= '9') || c == '-' || c == '.';
    bool lastDollar = c == '$' && i == name.size() - 1 && i > 0;
    if (i == 0 ? !letter : !(letter || other || lastDollar)) return false;
  }
  return true;
}

kj::Own<OwnerIdentities> newSharedIdentity(executors::Credentials credentials) {
  return kj::heap<SharedIdentity>(kj::mv(credentials));
}

kj::Own<OwnerIdentities> newAccountIdentities(uint32_t minUid) {
  return kj::heap<AccountIdentities>(minUid);
}

kj::Own<OwnerIdentities> newDynamicIdentities(Store& store, UidRange range, kj::String homesDir,
                                              EventLog& log, bool makeHomes) {
  return kj::heap<DynamicIdentities>(store, range, kj::mv(homesDir), log, makeHomes);
}

executors::Credentials cloneCredentials(const executors::Credentials& credentials) {
  executors::Credentials copy;
  copy.uid = credentials.uid;
  copy.gid = credentials.gid;
  copy.supplementaryGroups = kj::heapArray(credentials.supplementaryGroups.asPtr());
  copy.userName = kj::str(credentials.userName);
  copy.homeDir = kj::str(credentials.homeDir);
  return copy;
}

}  // namespace runner

#include "runner/job-names.h"

#include <gtest/gtest.h>
#include <kj/debug.h>

#include "runner/test-harness.h"

namespace runner {
namespace {

using testing::Harness;
using testing::TempDir;

// The description of the exception `function` throws; fails the test when it throws none.
template <typename Func>
kj::String errorOf(Func&& function) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::fwd<Func>(function))) {
    return kj::str(exception->getDescription());
  }
  ADD_FAILURE() << "expected an exception";
  return kj::str();
}

bool contains(kj::StringPtr text, kj::StringPtr part) {
  return strstr(text.cStr(), part.cStr()) != nullptr;
}

TEST(JobNames, ANameIsShortPlainTextThatCannotBeTakenForAnId) {
  for (kj::StringPtr good : {"web", "build.v2", "a_b-c", "x", "0xdeadbeef", "cafe.1", "G"}) {
    EXPECT_TRUE(kj::runCatchingExceptions([&]() { requireValidJobName(good); }) == nullptr)
        << good.cStr();
  }
  auto longest = kj::str(kj::repeat('n', MAX_JOB_NAME_CHARS));
  EXPECT_TRUE(kj::runCatchingExceptions([&]() { requireValidJobName(longest); }) == nullptr);

  auto tooLong = kj::str(kj::repeat('n', MAX_JOB_NAME_CHARS + 1));
  EXPECT_TRUE(contains(errorOf([&]() { requireValidJobName(tooLong); }), "1 to 64 characters"));
  EXPECT_TRUE(contains(errorOf([&]() { requireValidJobName(""); }), "1 to 64 characters"));
  for (kj::StringPtr bad : {"a b", "a/b", "caf\xc3\xa9", "a\nb", "-x;"}) {
    auto error = errorOf([&]() { requireValidJobName(bad); });
    EXPECT_TRUE(contains(error, "only letters, digits")) << error.cStr();
    EXPECT_FALSE(contains(error, "\n")) << error.cStr();
  }
  for (kj::StringPtr idLike : {"beef", "1234", "2024-01-02", "ABCDEF", "-", "3f1c2a9e-8d4b"}) {
    EXPECT_TRUE(contains(errorOf([&]() { requireValidJobName(idLike); }), "taken for a job id"))
        << idLike.cStr();
  }
}

TEST(JobNames, LabelsAreBoundedAndKeysUnique) {
  auto label = [](kj::StringPtr key, kj::StringPtr value) {
    return JobLabel{kj::str(key), kj::str(value)};
  };
  auto fine = kj::arr(label("team", "infra"), label("app.example/tier", ""),
                      label("k", kj::str(kj::repeat('v', MAX_LABEL_VALUE_BYTES))),
                      label("utf8", "caf\xc3\xa9 \xe6\x97\xa5"));
  EXPECT_TRUE(kj::runCatchingExceptions([&]() { requireValidLabels(fine); }) == nullptr);

  auto many = kj::heapArrayBuilder<JobLabel>(MAX_JOB_LABELS + 1);
  for (size_t i = 0; i <= MAX_JOB_LABELS; i++) many.add(label(kj::str("k", i), "v"));
  auto tooMany = many.finish();
  EXPECT_EQ(errorOf([&]() { requireValidLabels(tooMany); }),
            "invalid: too many labels (33; at most 32)");
  EXPECT_TRUE(kj::runCatchingExceptions([&]() { requireValidLabels(tooMany.slice(0, 32)); }) ==
              nullptr);

  struct Case {
    JobLabel label;
    kj::StringPtr error;
  };
  Case cases[] = {
      {label("", "v"), "1 to 64 characters"},
      {label(kj::str(kj::repeat('k', 65)), "v"), "1 to 64 characters"},
      {label("a b", "v"), "only letters, digits"},
      {label("k", kj::str(kj::repeat('v', 257))), "too long (257 bytes; at most 256)"},
      {label("k", "a\nb"), "without control characters"},
      {label("k", "\x1b[2J"), "without control characters"},
      {label("k", "\xff"), "without control characters"},
  };
  for (auto& c : cases) {
    auto one = kj::arr(kj::mv(c.label));
    auto error = errorOf([&]() { requireValidLabels(one); });
    EXPECT_TRUE(contains(error, c.error)) << error.cStr();
    EXPECT_FALSE(contains(error, "\n")) << error.cStr();
  }
  auto twice = kj::arr(label("k", "1"), label("k", "2"));
  EXPECT_TRUE(contains(errorOf([&]() { requireValidLabels(twice); }), "more than once"));
}

#define SKIP_UNLESS_JOBS_CAN_RUN()                 \
  KJ_IF_MAYBE (reason, testing::cannotRunJobs()) { \
    GTEST_SKIP() << reason->cStr();                \
  }

StartRequest named(kj::StringPtr name, kj::StringPtr command = "true") {
  StartRequest request;
  request.command = kj::str(command);
  request.name = kj::str(name);
  return request;
}

TEST(JobTableNames, ANameIsClaimedFromTheStartAndGivenBackWhenTheStartFails) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  auto first = h.table->start("alice", named("web"));
  // Before the first start has answered, the name is taken already.
  EXPECT_TRUE(contains(errorOf([&]() { h.table->start("alice", named("web")); }),
                       "the name web is in use by a job being started"));
  auto& job = *first.wait(h.io.waitScope);
  KJ_DEFER(job.release());
  EXPECT_EQ(job.record().name, "web");
  EXPECT_EQ(&KJ_ASSERT_NONNULL(h.table->resolve("alice", "web")), &job);
  EXPECT_TRUE(h.table->resolve("bob", "web") == nullptr);
  EXPECT_EQ(errorOf([&]() { h.table->start("alice", named("web")); }),
            kj::str("conflict: the name web is in use by job ", job.id(),
                    " (remove it first, or choose another)"));
  // Another owner has names of their own.
  auto& bobs = *h.table->start("bob", named("web")).wait(h.io.waitScope);
  KJ_DEFER(bobs.release());
  EXPECT_EQ(&KJ_ASSERT_NONNULL(h.table->resolve("bob", "web")), &bobs);

  // A start that fails gives its name back (the local executor refuses limits at launch, once the
  // name is claimed).
  auto refused = named("limited");
  refused.limits.memoryBytes = 64 << 20;
  EXPECT_EQ(errorOf([&]() { h.table->start("alice", kj::mv(refused)).wait(h.io.waitScope); }),
            "invalid: the local executor cannot apply limits; use the cgroup executor (limits "
            "asked for: memory)");
  auto& limited = *h.table->start("alice", named("limited")).wait(h.io.waitScope);
  limited.release();

  // A removed job's name is free again.
  h.waitEnded(job);
  h.table->remove(job, "by test").wait(h.io.waitScope);
  EXPECT_TRUE(h.table->resolve("alice", "web") == nullptr);
  auto& again = *h.table->start("alice", named("web")).wait(h.io.waitScope);
  again.release();
  EXPECT_EQ(&KJ_ASSERT_NONNULL(h.table->resolve("alice", "web")), &again);
}

TEST(JobTableNames, APrefixNamesTheOneJobWhoseIdStartsWithIt) {
  SKIP_UNLESS_JOBS_CAN_RUN();
  TempDir dir;
  Harness h(dir);
  kj::StringPtr argv[] = {"true"};
  auto& a = h.start(argv);
  auto& b = h.start(argv, "bob");
  a.release();
  b.release();
  EXPECT_EQ(&KJ_ASSERT_NONNULL(h.table->resolve("alice", a.id())), &a);
  // Any owner's job, by the shortest prefix that tells them apart (at least 4 characters).
  size_t common = 0;
  while (a.id()[common] == b.id()[common]) ++common;
  auto prefix = kj::str(b.id().slice(0, kj::max(common + 1, MIN_ID_PREFIX_CHARS)));
  EXPECT_EQ(&KJ_ASSERT_NONNULL(h.table->resolve("alice", prefix)), &b);
  if (common >= MIN_ID_PREFIX_CHARS) {
    auto shared = kj::str(a.id().slice(0, common));
    auto error = errorOf([&]() { h.table->resolve("alice", shared); });
    EXPECT_TRUE(contains(error, "ambiguous job id prefix")) << error.cStr();
  }
  EXPECT_TRUE(
      contains(errorOf([&]() { h.table->resolve("alice", kj::heapString(a.id().slice(0, 3))); }),
               "at least 4 characters"));
  EXPECT_TRUE(h.table->resolve("alice", "ffffffff-ffff") == nullptr ||
              a.id().startsWith("ffffffff-ffff") || b.id().startsWith("ffffffff-ffff"));
  EXPECT_TRUE(h.table->resolve("alice", "no-such") == nullptr);
  EXPECT_TRUE(h.table->resolve("alice", "") == nullptr);
}

}  // namespace
}  // namespace runner

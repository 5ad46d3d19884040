"""runner_test: a GoogleTest cc_test with runner's conventions."""

def runner_test(name, srcs, deps = [], size = "small", needs_root = False, tags = [], **kwargs):
    """A GoogleTest test (gtest_main is added).

    needs_root: the test runs outside Bazel's linux-sandbox, which takes away root's powers
    (switching users, cgroups, namespaces). Such tests skip with a reason when not run as root.
    """
    native.cc_test(
        name = name,
        size = size,
        srcs = srcs,
        tags = (["no-sandbox"] if needs_root else []) + tags,
        deps = deps + ["@system//:gtest_main"],
        **kwargs
    )

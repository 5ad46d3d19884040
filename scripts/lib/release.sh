# Sourced by the scripts that run runner for real (quickstart, install, bench): they build the
# release binaries (--config=release: -c opt, so -O2 and NDEBUG, which leaves KJ's KJ_DASSERT and
# KJ_IREQUIRE out and keeps every KJ_REQUIRE and KJ_ASSERT). Tests build fastbuild.

RELEASE_TARGETS=(//runner:runnerd //runner:runner-supervisor //client:runctl //certs:runner-certs)

# build_release OUTPUT_BASE [TARGET...]: builds RELEASE_TARGETS and the extra TARGETs in release
# mode and sets release_bin to the directory that holds them, laid out as bazel-bin is
# (runner/runnerd, client/runctl, ...). OUTPUT_BASE empty: Bazel's default one for the checkout.
# --symlink_prefix=/ leaves the bazel-* links to the fastbuild tree that tests use.
build_release() {
  local bazel=(bazel)
  if [[ -n $1 ]]; then bazel+=(--output_base="$1"); fi
  shift
  "${bazel[@]}" build --symlink_prefix=/ --config=release "${RELEASE_TARGETS[@]}" "$@"
  release_bin=$("${bazel[@]}" info --config=release bazel-bin 2>/dev/null)
}

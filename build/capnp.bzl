"""A cc_library generated from Cap'n Proto schemas by the Debian-installed `capnp` compiler."""

def capnp_cc_library(name, srcs, deps = [], imports = [], visibility = None):
    """Compiles `srcs` (.capnp files of this package) into a cc_library named `name`.

    imports: .capnp files of this package that `srcs` import, compiled by another
    capnp_cc_library, which must be among `deps`.
    """
    outs = []
    for src in srcs:
        outs += [src + ".h", src + ".c++"]
    native.genrule(
        name = name + "_gen",
        srcs = srcs + imports,
        outs = outs,
        cmd = "capnp compile -I/usr/include --src-prefix=$$(dirname $(location {first})) " .format(first = srcs[0]) +
              "-oc++:$(@D) " + " ".join(["$(location {})".format(src) for src in srcs]),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".c++")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + [
            "@system//:capnp",
            "@system//:capnp-rpc",
        ],
        visibility = visibility,
    )

# The record runner-supervisor keeps of each job it holds: one file per job, named after it, in
# <state-dir>/supervisor/held/. The next supervisor reads them: the same binary or a newer one after
# a re-exec watches the running jobs again, and one started after a crash kills what is left of
# them and reports them lost. Either may be the older, so fields are only ever added.

@0xf43b0f0c6e9fb146;

using Executor = import "executor.capnp";

$import "/capnp/c++.capnp".namespace("runner::wire");

struct HeldJobRecord {
  jobId @0 :Text;
  executor @1 :Text;
  # The executor that launched it, by name.

  bootId @2 :Text;
  # /proc/sys/kernel/random/boot_id when it was launched: after a reboot nothing of the job is
  # left, and its pid names someone else.

  state :union {
    launching @3 :Void;
    # Written before the executor launches it: it may have started or not, and nothing but its id
    # says where it runs.
    running @4 :Void;
    ended @5 :Executor.ExitStatus;
  }

  pid @6 :Int32;
  pidStartTime @7 :UInt64;
  # The main process, which leads the job's session and process group, and its start time (clock
  # ticks since boot) to tell it from a later process given the same pid.

  cgroupVersion @8 :UInt8;
  cgroupPaths @9 :List(Text);
  # The job's cgroup directories (one per v1 hierarchy), including the local executor's tracking
  # cgroup; none without one.

  accounting @10 :Bool;
  # The cgroups' counters are the job's own (not a tracking cgroup's).

  placement @11 :Executor.Placement;
}

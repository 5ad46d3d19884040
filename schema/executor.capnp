# The executor protocol: how runnerd has jobs run by a process that is not itself.
#
# runnerd keeps TLS, RPC, authorization, the job store and the output followers; whatever makes
# and watches a job's processes serves this interface, over a Unix socket with file-descriptor
# passing. `runner-supervisor` serves runner's own executors (local, cgroup) this way; an
# executor extension (a cluster executor, say) implements the same interfaces and is named to
# runnerd with `--executor-socket NAME=PATH`.
#
# What an implementation promises:
#  - Jobs belong to it, not to the connection: a client that disconnects (runnerd crashed or is
#    being upgraded) leaves its jobs running and their ends kept. A client that connects later
#    finds them with Executor.list() and takes them back with Executor.adopt().
#  - A job's end is kept until the client has recorded it and says so (Job.acknowledge()); an
#    implementation that can outlive its own restarts writes ends to disk before reporting them.
#  - Requests are checked as if the client were hostile: a job never runs as root, a uid
#    outside what the implementation was configured to grant is refused, and every refusal is
#    one clear line (and logged on the implementation's side).
#
# The bootstrap capability of a connection is an ExecutorHost.

@0xd3b1c1a6e5f0b2a7;

$import "/capnp/c++.capnp".namespace("runner::wire");

interface ExecutorHost {
  # The executors one process serves, by name.

  executors @0 () -> (names :List(Text));
  # Names of the executors served, in the host's order; the first is its default.

  executor @1 (name :Text) -> (executor :Executor);
  # The executor called `name`; fails with "unknown executor 'NAME' (known: ...)" otherwise.
}

interface Executor {
  # Makes jobs and keeps them, by job id, until their end has been acknowledged.

  launch @0 (request :LaunchRequest) -> (result :LaunchResult);
  # Starts a job; answers once it has exec'd (`started`) or failed to (`failed`: exec or a step
  # before it failed, or it did not reach exec in time). A request that can never work (empty
  # argv, root credentials, a uid the host does not grant, a limit this executor cannot apply,
  # a job id already held) throws one clear line instead: UNIMPLEMENTED for a limit, FAILED
  # otherwise. Cancelling the call (the client gave up) kills what was started and frees it.

  list @1 () -> (jobs :List(HeldJob));
  # Every job this executor holds: running, or ended and not yet acknowledged.

  adopt @2 (jobId :Text) -> (job :Job, started :Started);
  # The job with this id, for a client that lost its Job capability (it restarted); fails with
  # "no such job" for an id the executor does not hold.

  discard @3 (jobId :Text) -> ();
  # Kills the whole job if it still runs, waits for its end, and forgets it: for a client that
  # cannot take the job back. Answers once the job is gone; nothing for an id not held.
}

interface Job {
  # One job held by an executor. Dropping the capability changes nothing: the job runs on and
  # stays held (see Executor.adopt).

  signal @0 (signal :Int32) -> ();
  # Delivers `signal` to every process of the job (its process group, or its whole cgroup).
  # Does nothing once the job has ended.

  wait @1 () -> (end :ExitStatus);
  # Answers once the main process has ended, been reaped, and whatever else the job left running
  # has been killed, so its output is final. Any number of calls; the same answer every time
  # until the end is acknowledged.

  acknowledge @2 () -> ();
  # The client has recorded the end durably: the executor forgets the job. Fails while the job
  # is running.

  usage @3 () -> (usage :Usage);
  # What the job has used so far: CPU time and peak memory as ExitStatus.usage counts them, and
  # its resident memory now. Of an ended job, its final usage (current memory 0).
}

interface OutputFile {
  # Carries a descriptor (capnp file-descriptor passing): the client implements it over the
  # job's open output file and the executor reads it with getFd(). The executor never opens a
  # path on the client's behalf, so a client cannot make it write where the client could not.
}

struct LaunchRequest {
  jobId @0 :Text;
  # Names the job's resources (a cgroup) and keys the executor's table of held jobs.

  argv @1 :List(Text);
  # argv[0] is the command: an absolute path, or a name searched in the PATH of `env`.

  env @2 :List(Text);
  # The complete environment, "NAME=value"; nothing else is inherited.

  workingDir @3 :Text;
  # Absolute; entered after dropping to the job's user.

  output @4 :OutputFile;
  # Becomes the job's stdout and stderr; stdin is /dev/null.

  credentials @5 :Credentials;
  limits @6 :Limits;
  isolation @7 :Isolation;
}

struct Credentials {
  # The unprivileged identity the job runs as. Never uid or gid 0.
  uid @0 :UInt32;
  gid @1 :UInt32;
  supplementaryGroups @2 :List(UInt32);
  userName @3 :Text;
  homeDir @4 :Text;
}

struct Limits {
  # 0 in any field means "no limit".
  cpuMillicores @0 :UInt32;
  memoryBytes @1 :UInt64;
  ioReadBytesPerSec @2 :UInt64;
  ioWriteBytesPerSec @3 :UInt64;
  pids @4 :UInt32;
}

struct Isolation {
  pid @0 :Bool;
  mount @1 :Bool;
  net @2 :Bool;
}

struct LaunchResult {
  union {
    started :group {
      job @0 :Job;
      info @1 :Started;
    }
    failed @2 :LaunchFailure;
  }
}

struct Started {
  pid @0 :Int32;
  # The main process, in the executor host's PID namespace.

  pidStartTime @1 :UInt64;
  # Its start time in clock ticks since boot (/proc/PID/stat field 22): with `pid`, identifies
  # the process across pid reuse. 0 when unknown.

  placement @2 :Placement;
}

struct Placement {
  cgroupVersion @0 :UInt8;
  # 1 or 2; 0 when the job has no cgroup.
  cgroupPath @1 :Text;
  ioDevice @2 :Text;
  # "MAJOR:MINOR (name)" of the device the IO limits apply to; empty without them.
}

struct LaunchFailure {
  errorNumber @0 :Int32;
  message @1 :Text;
  # One line, for example "exec nope: No such file or directory".
}

struct ExitStatus {
  # How the main process ended: an exit code, or the signal that killed it.
  signaled @0 :Bool;
  exitCode @1 :Int32;
  termSignal @2 :Int32;

  oomKilled @3 :Bool;
  # The kernel OOM-killed some process of the job...
  oomKilledMain @4 :Bool;
  # ... and it was the main process.

  usage @5 :Usage;

  lost @6 :Text;
  # Non-empty when the executor lost track of the job (a supervisor that crashed while it ran):
  # what was left of the job was killed, this says why, and the fields above mean nothing.
}

struct Usage {
  cpuUserMicros @0 :UInt64;
  cpuSystemMicros @1 :UInt64;
  peakMemoryBytes @2 :UInt64;
  currentMemoryBytes @3 :UInt64;
  # Only in Job.usage's answer for a running job.
}

struct HeldJob {
  jobId @0 :Text;
  started @1 :Started;
  ended @2 :Bool;
  end @3 :ExitStatus;
  # Meaningful when `ended`.
}

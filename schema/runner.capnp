# runner's public API: what runnerd serves over mutual TLS and what runctl speaks.
#
# Every connection is handed one JobManager (the bootstrap capability) bound to the identity in
# the client's certificate: identity is fixed by the transport and is never claimed in a request.

@0xc00ecb64244cc721;

$import "/capnp/c++.capnp".namespace("runner::api");

# Errors
#
# A call that fails answers with a capnp exception whose `reason` (rpc.capnp's Exception.reason;
# a C++ client reads it after KJ's "remote exception: ") is one line: a kind, ": ", then the
# message, written for a person ("not found: job 42"). The kinds are part of this contract: a
# client tests the words before the first ": " and never the message, whose wording may change.
#
#   not found          a job id, name or id prefix names no job (JobManager.get).
#   permission denied  the caller may not do this: a job's owner or an admin only (stop, signal,
#                      remove, watchOutput, outputTimes), an admin only (prune with allUsers), or
#                      an identity that may run no jobs on this server.
#   limit              a bound or quota of the connection, the user or the server is reached
#                      (running jobs per user, output watches, job capabilities, descriptors,
#                      connections, unfinished answers; README's Limits). The exception's type is
#                      `overloaded`: wait for some of what is held to end, then try again.
#   invalid            the request itself is refused and always will be: an empty command, too
#                      many arguments or labels, a bad name, label, environment entry, executor,
#                      signal, timeout, list cursor or state, an ambiguous id prefix, a limit the
#                      executor cannot apply.
#   conflict           the request clashes with the job's state: a name in use, a job that has
#                      ended (signal), is still running (remove without force), or was removed.
#   unavailable        the server cannot do it now: its supervisor is not answering, its state
#                      store or log directory is failing, full or frozen. Worth trying again later.
#   internal           anything else: a bug, logged by the server in full.
#
# New kinds may be added; a client treats one it does not know as `internal`. The exception's
# type keeps capnp's meaning (`overloaded` for a limit, also for a store that is behind;
# `disconnected` when the supervisor is gone; `unimplemented` for a method this server does not
# have, which still reads "internal: ..."). A connection the server closes for a limit (too many
# connections of the user, answers left unfinished) gets an Abort with a reason in these same
# words.

interface JobManager {
  # Bound to the caller's identity. Any authenticated user may start jobs and read the
  # metadata of every job; only a job's owner (or a configured admin) may stop it or read
  # its output.

  start @0 (spec :JobSpec) -> (job :Job, info :JobInfo);
  # Starts a job owned by the caller. A command that cannot be started (no such file,
  # permission denied) still returns a job, in state `failed` with `error` set; an invalid
  # spec (empty command, bad limits) fails instead ("invalid: empty command"; see Errors).
  # Pipelining `start(spec).job.watchOutput(...)` starts and streams in one round trip.

  get @1 (id :Text) -> (job :Job);
  # The job `id` names; fails with "not found: job ID" when it names none. The owner and admins
  # receive a full Job; anyone else a read-only one. `id` is tried, in this order, as:
  # 1. a job's full id;
  # 2. the name (JobSpec.name) of one of the caller's own jobs;
  # 3. a prefix of at least 4 characters of the id of exactly one job (of any user): a prefix
  #    that several jobs share fails with "invalid: ambiguous job id prefix P: it matches ID1,
  #    ID2, ..." (at most 8 ids, then "..."), and a shorter one is not found.
  # A name never looks like an id or a prefix of one (see JobSpec.name), so the three never
  # compete. The lookup costs O(log jobs) whatever the number of stored jobs.

  list @2 (filter :ListFilter) -> (jobs :List(JobInfo), next :Text);
  # Jobs in order of creation, oldest first, a page at a time: at most 1,000 jobs or 1 MiB of
  # them per answer (but always one), and fewer when the server looked through 100,000 stored jobs for this page
  # without filling it. An empty `next` means there are no more; otherwise pass it as
  # `filter.after`, with the rest of the filter unchanged, for the next page.

  whoami @3 () -> (user :Text, admin :Bool);
  # The identity this connection is bound to.

  prune @4 (olderThanMillis :UInt64, allUsers :Bool) -> (removed :UInt32, bytes :UInt64);
  # Removes the caller's ended jobs (every user's with `allUsers`, which only an admin may ask
  # for) that ended at least `olderThanMillis` ago (0: every ended job), as Job.remove does:
  # running jobs stay. Answers once they are gone, with how many were removed and the bytes of
  # output they held.
}

struct ListFilter {
  allUsers @0 :Bool;
  # false: only the caller's jobs; true: every user's jobs.

  states @1 :List(State);
  # Empty: any state. At most 16 entries.

  limit @2 :UInt32;
  # At most this many (the newest ones, among the newest 100,000 of the selection); 0 means no
  # limit.

  after @3 :Text;
  # Empty: from the first job. Otherwise the `next` of the previous page.

  name @4 :Text;
  # Empty: any. Otherwise only the job with this name (JobSpec.name); with `allUsers`, each
  # user's job of that name.

  labels @5 :List(Label);
  # Only jobs that carry every one of these labels (same key, same value). At most 32 entries.
}

interface Job {
  info @0 () -> (info :JobInfo);
  # The job's current metadata.

  wait @1 () -> (info :JobInfo);
  # Resolves once the job has ended (any state but `running`).

  stop @2 (graceMillis :UInt32) -> (info :JobInfo);
  # Owner or admin only. Sends SIGTERM to the whole job, waits up to `graceMillis`
  # (0: the server's default), then SIGKILL; resolves with the final metadata. Stopping a job
  # that has already ended just returns its metadata.

  watchOutput @3 (sink :OutputSink, fromOffset :UInt64, follow :Bool)
      -> (handle :Subscription);
  # Owner or admin only. Pushes the job's output, starting at byte `fromOffset`, to `sink`.
  # With `follow`, keeps pushing new output until the job has ended; without it, stops at the
  # current end of the output. Then calls `sink.end()`. Dropping `handle` cancels.

  remove @4 (force :Bool, graceMillis :UInt32) -> ();
  # Owner or admin only. Removes an ended job: its record, then its output file; resolves once
  # both are gone. A running job is refused ("conflict: job ID is still running ...") unless
  # `force`, which stops it first as `stop(graceMillis)` does. From then on `get` does not find
  # the job, every method of a Job capability still held for it fails with "conflict: job ID was
  # removed", and an output watch of it stops there: the server lets go of its sink without
  # calling `end()`.

  signal @5 (signal :Int32) -> (info :JobInfo);
  # Owner or admin only. Delivers `signal` (a Linux signal number, 1 to 64) to every process of
  # the running job (its cgroup, or its process group without one), once, and answers with the
  # job's metadata at that moment. The signal is sent as is: the job may catch or ignore it, and
  # if it ends the job, the job ends `killed` (or `exited`, if it exits on its own), not
  # `stopped`. Refused for a number that is not a signal, 0 included ("invalid: ..."), and for a
  # job that has ended ("conflict: job ID has ended").

  outputTimes @6 () -> (samples :List(OutputSample));
  # Owner or admin only. When the job's output arrived, oldest first: offsets strictly increase,
  # times do not decrease, and the last sample covers all the output written when the call was
  # answered. The time of byte B is that of the first sample whose `offset` is greater than B.
  # runnerd notes the size of a running job's output each time it changes, at most once per
  # 100 ms (later writes within those 100 ms extend the last sample), and keeps at most 4,096
  # samples per job: when they are full, neighbours are merged pairwise and the period doubles,
  # so a long job's times get coarser instead of more numerous. The samples are kept with the
  # job once it has ended. Two exceptions: output a running job wrote while runnerd was not
  # running (a restart) is one sample at the output file's last write before runnerd came back,
  # and a job that ended before runnerd kept times has one sample, all its output at its end.
}

struct OutputSample {
  # The output up to byte `offset` (exclusive) had arrived by `timeMillis` plus the sampling
  # period (see Job.outputTimes); the bytes after the previous sample's offset arrived no
  # earlier than `timeMillis`.
  offset @0 :UInt64;
  timeMillis @1 :Int64;
  # Unix time in milliseconds.
}

interface OutputSink {
  # Implemented by the client.

  write @0 (data :Data) -> stream;
  # The next bytes of output, in order. Streaming: the server keeps a bounded number of
  # bytes in flight, so a client that does not read costs the server bounded memory.

  end @1 (info :JobInfo);
  # Everything requested has been delivered. With `follow`, `info` is the final metadata of
  # the ended job; without it, the metadata at the time the end of the output was reached.
}

interface Subscription {
  # Holding this keeps a watch alive; dropping it cancels the watch.
}

struct JobSpec {
  command @0 :Text;
  # Program to run: an absolute path, or a name looked up in the job's PATH.

  args @1 :List(Text);
  # Arguments after the program name (argv[1..]).

  env @2 :List(EnvVar);
  # Extra environment. The job never inherits the server's environment; it gets PATH, HOME,
  # USER, LOGNAME, LANG and then these (which may override them).

  workingDir @3 :Text;
  # Empty: the home directory of the identity the job runs as (or / when it has none).

  limits @4 :Limits;
  isolation @5 :Isolation;

  executor @6 :Text;
  # Empty: the server's default executor.

  maxOutputBytes @7 :UInt64;
  # The most output the job may write; 0: the server's limit (runnerd --max-output), which a
  # larger value cannot exceed. A job that reaches it is killed and ends `stopped`, with
  # `error` saying so.

  name @8 :Text;
  # Empty: none. Otherwise a name for the job, unique among its owner's jobs that have not
  # been removed (a start with a name in use is refused: "conflict: the name N is in use by job
  # ID ..."), and usable wherever an id is (JobManager.get). 1 to 64 characters of
  # A-Z a-z 0-9 . _ -, and not only hexadecimal digits and dashes (so that no name can be taken
  # for an id or a prefix of one).
  labels @9 :List(Label);
  # Free-form KEY=VALUE tags, shown with the job and selected by ListFilter.labels. At most 32,
  # keys unique: a key is 1 to 64 characters of A-Z a-z 0-9 . _ - /, a value at most 256 bytes of
  # UTF-8 without control characters.

  timeoutMillis @10 :UInt64;
  # 0: none. The job may run this long (from its start); then runnerd stops it as Job.stop does,
  # with the server's grace period, and it ends `stopped` with `endReason` timeout. The deadline
  # is kept across restarts of runnerd (it is the start time plus this). At most 10 years.

  idleTimeoutMillis @11 :UInt64;
  # 0: none. When the job has written no output for this long (its output file was not written
  # to), runnerd stops it as Job.stop does, and it ends `stopped` with `endReason` idleTimeout.
  # Measured from the last write (the output file's modification time, so a restarted runnerd
  # goes on counting from there), or from the start before any. At most 10 years.
}

struct Label {
  key @0 :Text;
  value @1 :Text;
}

struct EnvVar {
  name @0 :Text;
  value @1 :Text;
}

struct Limits {
  # 0 in any field means "no limit".

  cpuMillicores @0 :UInt32;
  # CPU bandwidth in thousandths of a core: 500 = half a core, 2000 = two cores.

  memoryBytes @1 :UInt64;
  # Memory limit in bytes; swap is disabled for the job.

  ioReadBytesPerSec @2 :UInt64;
  ioWriteBytesPerSec @3 :UInt64;
  # Disk bandwidth on the block device that holds the job's working directory.

  pids @4 :UInt32;
  # Maximum number of processes and threads.
}

struct Isolation {
  pid @0 :Bool;
  # New PID namespace: the job is PID 1 and sees a fresh /proc.

  mount @1 :Bool;
  # New mount namespace with private propagation.

  net @2 :Bool;
  # New network namespace with only loopback, up.
}

enum State {
  running @0;
  exited @1;   # the main process exited; see exitCode
  killed @2;   # the main process was killed by a signal it did not get from a stop; see termSignal
  stopped @3;  # stopped by a user
  failed @4;   # could not be started; see error
  lost @5;     # the server went away while the job was running and it could not be followed
}

struct JobInfo {
  id @0 :Text;
  # A random UUID.

  owner @1 :Text;
  command @2 :Text;
  args @3 :List(Text);
  state @4 :State;

  exitCode @5 :Int32;
  # Meaningful when state is `exited`.

  termSignal @6 :Int32;
  # The signal that ended the main process (`killed`, and `stopped` when it took a signal); 0 otherwise.

  oomKilled @7 :Bool;
  # The kernel's OOM killer killed a process of the job (cgroup executor only).

  oomKilledMain @8 :Bool;
  # ...and that process was the job's main process.

  error @9 :Text;
  # Why the job failed to start (`failed`), why it was lost, why runnerd stopped it (a
  # `stopped` job that reached its output limit), or, for a job that ended, that the log file
  # system was full then (its output may be cut short); in one line.

  createdAt @10 :Int64;
  startedAt @11 :Int64;
  endedAt @12 :Int64;
  # Unix time in milliseconds; 0 when it has not happened.

  limits @13 :Limits;
  isolation @14 :Isolation;
  executor @15 :Text;

  usage @16 :Usage;

  outputBytes @17 :UInt64;
  # Bytes of output written so far.

  workingDir @18 :Text;

  cgroup @19 :CgroupInfo;
  # Filled by the cgroup executor.

  uid @20 :UInt32;
  gid @21 :UInt32;
  # The Unix identity the job runs (ran) as; 0 for a job that failed before one was chosen.

  maxOutputBytes @22 :UInt64;
  # The output limit that applies to the job; 0 for a job recorded before limits existed.

  name @23 :Text;
  labels @24 :List(Label);
  # As given in JobSpec; empty for a job started without them.

  endReason @25 :EndReason;
  # Why the job was stopped: of a `stopped` job, by a user, a timeout, an idle timeout or its
  # output limit; `none` for every other end (exited, killed by a signal it did not get from a
  # stop, Job.signal's included, failed, lost). Set as soon as the stop begins, so a job still
  # `running` through its grace period already shows it.

  timeoutMillis @26 :UInt64;
  idleTimeoutMillis @27 :UInt64;
  # The spec's timeouts; 0: none.
}

enum EndReason {
  none @0;
  stopped @1;      # Job.stop, or Job.remove with `force`
  timeout @2;      # JobSpec.timeoutMillis passed
  idleTimeout @3;  # no output for JobSpec.idleTimeoutMillis
  outputLimit @4;  # the output reached maxOutputBytes
}

struct Usage {
  # Of an ended job, final; of a running job, so far, in Job.info's answer (`list` leaves a
  # running job's usage 0, so that a page of jobs reads no process's counters).

  cpuUserMicros @0 :UInt64;
  cpuSystemMicros @1 :UInt64;
  peakMemoryBytes @2 :UInt64;
  # Peak resident memory: of the whole cgroup for `cgroup`; for `local`, the largest of one
  # process (the main process's, its reaped children's included). 0 when unknown: the kernel
  # carries the launching process's own peak into a new job's process, so a `local` job whose
  # peak stays below the supervisor's is known only by what /proc showed while it ran (when its
  # usage was read then).

  currentMemoryBytes @3 :UInt64;
  # A running job's resident memory now (Job.info only): the sum over its processes for `local`,
  # the cgroup's for `cgroup`; 0 for an ended job.
}

struct CgroupInfo {
  version @0 :UInt8;
  # 1 or 2; 0 when the job ran without a cgroup.

  path @1 :Text;
  # The job's cgroup, relative to the hierarchy root.

  ioDevice @2 :Text;
  # "MAJOR:MINOR (name)" of the block device the IO limits apply to; empty without IO limits.
}

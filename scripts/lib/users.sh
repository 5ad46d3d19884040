# Sourced by install-deps and install: the system users runner needs. Idempotent.

# create_users [SUDO...]: runner, the user runnerd drops to after start-up (it owns the state
# and log directories, reads the output files and reaches the root supervisor's socket; it never
# runs a job), and runner-jobs, the user jobs run as under --run-as, whose home is their default
# working directory (so it exists and is writable by the jobs, and by nobody else).
create_users() {
  local sudo=("$@")
  if ! getent passwd runner >/dev/null; then
    echo "creating the system user runner" >&2
    "${sudo[@]}" useradd --system --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin --comment "runner daemon" runner
  fi
  local home=/var/lib/runner-jobs
  if ! getent passwd runner-jobs >/dev/null; then
    echo "creating the system user runner-jobs" >&2
    "${sudo[@]}" useradd --system --user-group --home-dir "$home" --no-create-home \
      --shell /usr/sbin/nologin --comment "runner jobs" runner-jobs
  elif [[ $(getent passwd runner-jobs | cut -d: -f6) != "$home" ]]; then
    echo "moving the home of runner-jobs to $home" >&2
    "${sudo[@]}" usermod --home "$home" runner-jobs
  fi
  if [[ ! -d $home ]]; then
    "${sudo[@]}" install -d -m 0750 -o runner-jobs -g "$(id -gn runner-jobs)" "$home"
  fi
}

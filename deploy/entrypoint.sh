#!/bin/sh
# The image's ENTRYPOINT (on Fly and under plain Docker): prepares the machine as root, migrates the
# database that is on this machine, then runs the command (CMD: gunicorn) as the service user.
#
#  1. Fly runs `release_command` through this ENTRYPOINT too, on a temporary machine with
#     RELEASE_COMMAND=1 and without the volume. SQLite lives on the volume, so there it would
#     migrate a throwaway file: with SQLite this script does nothing on a release machine.
#  2. The volume is root's when Fly first mounts it: the service user is made its owner.
#  3. Secret files (fly.toml [[files]]) arrive with whatever owner and mode Fly gives them: they
#     are copied into a directory only the service user can read, each copy mode 0600, and the
#     LBPAY_*_FILE settings name the copies.
#  4. With LBPAY_REPLICA_URL set (an S3-compatible bucket: Tigris on Fly), `lbpay replica prepare`
#     writes Litestream's settings beside the secrets and fills a volume without the database from
#     the replica (as `lbpay restore --from-replica` does; on a shop's very first start there is none).
#  5. `lbpay init` migrates (one process at a time: the migration takes a lock), then the command
#     replaces this shell, so gunicorn gets Fly's kill_signal directly. With a replica, gunicorn runs
#     under `litestream replicate -exec`, which passes the signal on, replicates until gunicorn has
#     stopped, and then stops too.
#
# Every path and the user can be moved by an environment variable, so tests/test_fly_start.py
# runs this same file outside a container.
set -eu

data_dir=${LBPAY_INSTANCE_PATH:-/data}
secrets_from=${LBPAY_SECRETS_FROM:-/run/secrets}
secrets_dir=${LBPAY_SECRETS_DIR:-/run/lbpay-secrets}
run_uid=${LBPAY_RUN_UID:-10001}
run_gid=${LBPAY_RUN_GID:-$run_uid}

say() { echo "entrypoint: $*" >&2; }

if [ "$#" -eq 0 ]; then
  say "no command given (the image's CMD starts gunicorn)"
  exit 64
fi

if [ "${RELEASE_COMMAND:-}" = 1 ]; then
  case ${LBPAY_DATABASE_URL:-sqlite} in
    postgres://* | postgresql://*) ;;
    *)
      say "release command '$*' not run: the SQLite database is on the volume, which Fly does not"
      say "mount on a release machine; each machine runs 'lbpay init' itself when it starts"
      exit 0
      ;;
  esac
fi

case $run_uid$run_gid in
  *[!0-9]*) say "LBPAY_RUN_UID and LBPAY_RUN_GID must be numbers"; exit 64 ;;
esac

if [ "$(id -u)" = 0 ]; then
  # Fly's console (`fly ssh console`) is root: anything it left on the volume is handed back too.
  # -h changes a symlink itself, never what it points at.
  mkdir -p "$data_dir"
  find "$data_dir" -xdev -path "$data_dir/lost+found" -prune -o ! -user "$run_uid" \
    -exec chown -h "$run_uid:$run_gid" {} +
  owner="-o $run_uid -g $run_gid"
  as_service="setpriv --reuid=$run_uid --regid=$run_gid --clear-groups --no-new-privs --"
  export HOME="$data_dir"
else
  # Already unprivileged (`docker run --user`, a developer's shell): there is nothing to drop.
  owner=""
  as_service=""
fi

umask 077
if [ -d "$secrets_from" ]; then
  mkdir -p "$secrets_dir"
  # $owner and $as_service are unquoted on purpose: empty, or words made of checked numbers.
  # shellcheck disable=SC2086
  install -d -m 0700 $owner "$secrets_dir"
  find "$secrets_dir" -mindepth 1 -maxdepth 1 -type f -exec rm -f {} +  # a removed secret goes
  copied=0
  for source in "$secrets_from"/*; do
    [ -f "$source" ] || continue
    # shellcheck disable=SC2086
    install -m 0600 $owner "$source" "$secrets_dir/${source##*/}"
    copied=$((copied + 1))
  done
  say "copied $copied secret file(s) from $secrets_from to $secrets_dir (mode 0600)"
fi

replicate=""
if [ -n "${LBPAY_REPLICA_URL:-}" ] && [ "${RELEASE_COMMAND:-}" != 1 ]; then
  litestream_config="$secrets_dir/litestream.yml"
  # shellcheck disable=SC2086
  install -d -m 0700 $owner "$secrets_dir"
  # shellcheck disable=SC2086
  $as_service lbpay replica prepare "$litestream_config" >&2
  replicate=1
fi

if [ "${RELEASE_COMMAND:-}" != 1 ]; then
  # shellcheck disable=SC2086
  $as_service lbpay init
fi

if [ -n "$replicate" ] && [ "${1##*/}" = gunicorn ]; then
  # The server runs under Litestream; one-off commands (`lbpay courses add`) write to the volume
  # and the next start replicates what they wrote. The command goes to -exec as one string, each
  # word single-quoted. AWS_CA_BUNDLE is left out: Litestream's S3 client refuses to start with it.
  command=""
  for word in "$@"; do
    command="$command '$(printf '%s' "$word" | sed "s/'/'\\\\''/g")'"
  done
  say "replicating the database to $LBPAY_REPLICA_URL while the server runs"
  # shellcheck disable=SC2086
  exec env -u AWS_CA_BUNDLE $as_service litestream replicate -config "$litestream_config" -exec "$command"
fi
# shellcheck disable=SC2086
exec $as_service "$@"

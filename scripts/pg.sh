#!/usr/bin/env bash
# scripts/pg.sh — helpers for a private, throw-away PostgreSQL cluster.
#
# Source it (". scripts/pg.sh") from run.sh / test.sh; it only defines
# functions and does nothing on its own. Provided:
#
#   pg_ensure_installed         install PostgreSQL via apt when no initdb exists
#   pg_start_private DIR PORT   create (if needed) and start a cluster in DIR,
#                               listening on 127.0.0.1:PORT only, trust auth,
#                               superuser "coordinator", database "coordinator"
#   pg_stop_private DIR         fast shutdown; silent when nothing is running
#   pg_destroy_private DIR      stop, then delete the cluster's files
#   pg_connection_string PORT [DB]
#                               print the Npgsql connection string
#
# After pg_ensure_installed / pg_start_private these globals are set:
#   PG_BIN          bin dir of the newest installed major version
#   PG_DIR          the data dir really used (see the root note below)
#   PG_STARTED_NOW  1 when pg_start_private started the server, 0 when reused
#
# Root note: PostgreSQL refuses to run as root, so when invoked as root the
# cluster is owned and run by the "postgres" OS user. That user must be able
# to traverse every parent directory of DIR; when it cannot (e.g. DIR is under
# a 0700 home directory) a directory under /var/tmp is used instead and a
# message says so.
#
# Every function returns non-zero on failure, so callers running with
# `set -e` stop at the first problem.

# Callers use strict mode; so does this file, except in an interactive shell
# (where `set -e` would close the terminal on the first failing command).
[[ $- == *i* ]] || set -euo pipefail

if [[ -n "${_COORDINATOR_PG_SH:-}" ]]; then return 0; fi
_COORDINATOR_PG_SH=1

PG_BIN="${PG_BIN:-}"
PG_DIR=""
PG_STARTED_NOW=0
PG_SUPERUSER=coordinator
PG_DATABASE=coordinator

_pg_say() { echo "[pg] $*" >&2; }
_pg_err() { echo "[pg] ERROR: $*" >&2; return 1; }

# Print the bin directory of the newest PostgreSQL major version installed
# under /usr/lib/postgresql (Debian layout); nothing when none is installed.
_pg_find_bin() {
  local b d
  d=$(for b in /usr/lib/postgresql/*/bin; do
        if [[ -x "$b/initdb" ]]; then echo "$b"; fi
      done | sort -V | tail -n 1)
  [[ -n "$d" ]] && echo "$d"
}

# Run a command with root privileges: directly as root, via sudo otherwise.
_pg_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n env DEBIAN_FRONTEND=noninteractive "$@" ||
      _pg_err "'sudo $*' failed (passwordless sudo needed, or run: sudo $*)"
  else
    _pg_err "need root to run '$*' but not root and no sudo; install PostgreSQL manually (apt-get install postgresql postgresql-contrib)"
  fi
}

# Install PostgreSQL when no initdb exists, then set PG_BIN.
pg_ensure_installed() {
  PG_BIN=$(_pg_find_bin || true)
  if [[ -z "$PG_BIN" ]]; then
    _pg_say "PostgreSQL not found; installing postgresql + postgresql-contrib with apt"
    command -v apt-get >/dev/null 2>&1 ||
      _pg_err "apt-get not available; install PostgreSQL (with contrib) yourself" || return 1
    export DEBIAN_FRONTEND=noninteractive

    # Keep Debian's own "main" cluster from being started by the package
    # scripts: we never use it. policy-rc.d exit code 101 means "action
    # forbidden". Only done when no policy exists (containers often ship one).
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]] && [[ $(id -u) -eq 0 ]]; then
      printf '#!/bin/sh\n# temporary, written by scripts/pg.sh during apt-get install\nexit 101\n' \
        > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi

    local rc=0
    {
      # Refresh the package lists only when they are missing (fresh image)
      # or when the package is not known to apt yet.
      if ! apt-cache show postgresql >/dev/null 2>&1 ||
         ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        _pg_as_root apt-get update -q
      fi
      _pg_as_root apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql postgresql-contrib </dev/null
    } || rc=$?

    if [[ $made_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    [[ $rc -eq 0 ]] || _pg_err "apt-get install postgresql failed (exit $rc)" || return 1

    PG_BIN=$(_pg_find_bin || true)
    [[ -n "$PG_BIN" ]] ||
      _pg_err "PostgreSQL installed but no initdb under /usr/lib/postgresql/*/bin" || return 1
  fi
  export PG_BIN
}

# True when we must hand the cluster to the postgres OS user.
_pg_need_owner_switch() { [[ $(id -u) -eq 0 ]]; }

# Run a command as the cluster owner (postgres when we are root, else us).
# Runs from / so the postgres user never trips over an unreadable cwd.
_pg_run() {
  if _pg_need_owner_switch; then
    if command -v runuser >/dev/null 2>&1; then
      (cd / && runuser -u postgres -- "$@")
    else
      local cmd
      cmd=$(printf '%q ' "$@")
      (cd / && su postgres -s /bin/sh -c "$cmd")
    fi
  else
    "$@"
  fi
}

# Stable stand-in directory for DIR when the postgres user cannot reach DIR.
_pg_fallback_dir() {
  echo "/var/tmp/coordinator-pg/$(printf '%s' "$1" | md5sum | cut -c1-12)-$(basename "$1")"
}

# Print the directory really used for DIR. As root, DIR works only when the
# postgres user can reach it; otherwise a stable per-DIR place under /var/tmp.
# Creates the directory (owned by the cluster owner) as a side effect.
_pg_resolve_dir() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  if _pg_need_owner_switch; then
    getent passwd postgres >/dev/null ||
      _pg_err "running as root but there is no 'postgres' OS user (is the postgresql package installed?)" || return 1
    chown postgres: "$dir"
    chmod 700 "$dir"
    if ! _pg_run test -r "$dir" -a -w "$dir" -a -x "$dir"; then
      local alt
      alt=$(_pg_fallback_dir "$dir")
      _pg_say "the postgres user cannot reach $dir (a parent directory is not traversable);"
      _pg_say "using $alt instead"
      mkdir -p "$alt"
      chmod 1777 /var/tmp/coordinator-pg 2>/dev/null || true
      chown postgres: "$alt"
      chmod 700 "$alt"
      dir=$alt
    fi
  fi
  echo "$dir"
}

# Same mapping as _pg_resolve_dir, without creating anything (for stop).
_pg_existing_dir() {
  local dir=$1 alt
  if [[ -d "$dir" ]]; then
    dir=$(cd "$dir" && pwd -P)
    [[ -f "$dir/PG_VERSION" ]] && { echo "$dir"; return 0; }
  fi
  alt=$(_pg_fallback_dir "$dir")
  [[ -f "$alt/PG_VERSION" ]] && { echo "$alt"; return 0; }
  return 1
}

# Directory holding the pg_stat_statements extension files of PG_BIN's version.
_pg_sharedir() {
  local s
  s=$("$PG_BIN/pg_config" --sharedir 2>/dev/null) && [[ -d "$s" ]] && { echo "$s"; return; }
  # pg_config lives in the -dev package on some systems; derive it instead.
  echo "/usr/share/postgresql/$(basename "$(dirname "$PG_BIN")")"
}

# True when a server accepts connections on 127.0.0.1:PORT. The user name is
# given so the server log does not fill with "role root does not exist".
_pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$PG_SUPERUSER" -d postgres >/dev/null 2>&1
}

# Print the Npgsql connection string for a private cluster on PORT.
pg_connection_string() {
  local port=$1 db=${2:-$PG_DATABASE}
  echo "Host=127.0.0.1;Port=${port};Username=${PG_SUPERUSER};Database=${db}"
}

# pg_start_private DIR PORT — see the header comment.
pg_start_private() {
  local dir_arg=${1:?usage: pg_start_private DIR PORT} port=${2:?usage: pg_start_private DIR PORT}
  [[ -n "$PG_BIN" ]] || pg_ensure_installed || return 1
  PG_STARTED_NOW=0

  local dir
  dir=$(_pg_resolve_dir "$dir_arg") || return 1
  PG_DIR=$dir

  # Unix socket paths are limited to ~107 bytes; very deep checkouts would
  # make the server refuse to start, so put the socket in /tmp then.
  local sockdir=$dir
  if (( ${#dir} + 16 > 100 )); then
    sockdir=/tmp
    _pg_say "data dir path is too long for a unix socket; socket goes to /tmp"
  fi

  # 1. Create the cluster once.
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    if [[ -n "$(ls -A "$dir")" ]]; then
      _pg_err "$dir is not empty but holds no PostgreSQL cluster; remove it first" || return 1
    fi
    local locale=C.UTF-8
    if ! locale -a 2>/dev/null | grep -iE '^c\.utf-?8$' >/dev/null; then locale=C; fi
    _pg_say "creating cluster in $dir (locale $locale)"
    local out
    if ! out=$(_pg_run "$PG_BIN/initdb" -D "$dir" -U "$PG_SUPERUSER" --auth=trust \
                 -E UTF8 --locale="$locale" 2>&1); then
      echo "$out" >&2
      _pg_err "initdb failed for $dir" || return 1
    fi
  fi

  # 2. Reuse a server already running on this directory.
  if _pg_run "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    local running_port
    running_port=$(sed -n '4p' "$dir/postmaster.pid" 2>/dev/null || true)
    if [[ -n "$running_port" && "$running_port" != "$port" ]]; then
      _pg_err "a server already runs on $dir but on port $running_port, not $port; stop it with pg_stop_private" || return 1
    fi
    _pg_say "reusing the server already running on $dir (port $port)"
  else
    # 3. (Re)write the settings on every start so port changes take effect.
    #    postgresql.auto.conf is read after postgresql.conf and wins.
    local preload=""
    if [[ -f "$(_pg_sharedir)/extension/pg_stat_statements.control" ]]; then
      preload="shared_preload_libraries = 'pg_stat_statements'"
    else
      _pg_say "pg_stat_statements not available (postgresql-contrib missing?); not preloading it"
    fi
    local conf
    conf=$(cat <<EOF
# Written by scripts/pg.sh on every start; edits here are overwritten.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
max_connections = 1000
shared_buffers = '256MB'
synchronous_commit = on
log_min_messages = warning
log_checkpoints = off
logging_collector = off
$preload
EOF
)
    printf '%s\n' "$conf" > "$dir/postgresql.auto.conf"
    _pg_need_owner_switch && chown postgres: "$dir/postgresql.auto.conf"

    # Something else on the port would make the start fail in a confusing way.
    if _pg_ready "$port"; then
      _pg_err "port $port on 127.0.0.1 is already used by another PostgreSQL server; choose another port" || return 1
    fi

    # -W: don't let pg_ctl wait, we poll pg_isready below with our own timeout.
    # pg_ctl detaches the postmaster into its own session, so Ctrl-C in the
    # terminal does not reach it. Server output goes to DIR/postgres.log.
    _pg_say "starting PostgreSQL on 127.0.0.1:$port (log: $dir/postgres.log)"
    if ! _pg_run "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/postgres.log" -W start >/dev/null; then
      tail -n 30 "$dir/postgres.log" >&2 2>/dev/null || true
      _pg_err "pg_ctl start failed for $dir" || return 1
    fi
    PG_STARTED_NOW=1
  fi

  # 4. Wait until it accepts connections (30 s).
  local i
  for ((i = 0; i < 60; i++)); do
    if _pg_ready "$port"; then break; fi
    if (( i > 2 )) && ! _pg_run "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      i=60; break   # postmaster died; no point waiting
    fi
    sleep 0.5
  done
  if (( i >= 60 )); then
    local log_tail
    log_tail=$(tail -n 30 "$dir/postgres.log" 2>/dev/null || true)
    echo "----- last lines of $dir/postgres.log -----" >&2
    echo "$log_tail" >&2
    echo "--------------------------------------------" >&2
    if [[ "$log_tail" == *'Address already in use'* ]]; then
      _pg_err "port $port on 127.0.0.1 is taken (another server, or a connection there still in TIME-WAIT for up to 60 s); wait, or set this script's port variable to a free port" || return 1
    fi
    _pg_err "PostgreSQL on 127.0.0.1:$port did not become ready within 30 s" || return 1
  fi

  # 5. Create the application database once.
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d postgres)
  if [[ "$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$PG_DATABASE'")" != 1 ]]; then
    "${psql[@]}" -c "create database $PG_DATABASE" >/dev/null ||
      _pg_err "could not create database $PG_DATABASE" || return 1
  fi
  export PG_DIR PG_STARTED_NOW
}

# pg_stop_private DIR — fast shutdown; quiet when nothing runs there.
pg_stop_private() {
  local dir_arg=${1:?usage: pg_stop_private DIR} dir
  [[ -n "$PG_BIN" ]] || PG_BIN=$(_pg_find_bin || true)
  [[ -n "$PG_BIN" ]] || return 0
  dir=$(_pg_existing_dir "$dir_arg") || return 0
  if _pg_run "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    _pg_run "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null ||
      _pg_err "could not stop the server on $dir" || return 1
    _pg_say "stopped PostgreSQL in $dir"
  fi
  return 0
}

# pg_destroy_private DIR — stop the server, then delete the cluster (and its
# /var/tmp stand-in, if one was used) so the next start begins from scratch.
pg_destroy_private() {
  local dir_arg=${1:?usage: pg_destroy_private DIR} abs
  pg_stop_private "$dir_arg" || return 1
  if [[ -d "$dir_arg" ]]; then
    abs=$(cd "$dir_arg" && pwd -P)
    rm -rf "$(_pg_fallback_dir "$abs")"
    rm -rf "$abs"
  fi
}

#!/usr/bin/env bash
# bench/run.sh — the benchmark harness in one command.
#
#   ./bench/run.sh                 the full run (22-30 minutes on 2 cores before pg-engine ran beside it; longer now)
#   ./bench/run.sh --quick         smaller sizes, one run each (under 5 minutes)
#   ./bench/run.sh --only engine,dispatch,lifecycle,receipts-cost,telemetry,backlog,position,parked,priority,scale,failover,rolling,stream,openai,lightning,receipts-verify,ledger-verify,worker
#   ./bench/run.sh --only engine --scenarios drain,latency,steady --peers pgboss,graphile|none
#   ./bench/run.sh --repeat 5      runs per figure (the median is reported; default 3, quick 1)
#   ./bench/run.sh --no-pin        do not pin the node and the load generator to separate CPUs
#   ./bench/run.sh --no-baseline   measure this build's service alone, without pg-engine beside it
#
# It installs PostgreSQL (apt) and the peers (npm ci in bench/peers) when missing, builds Release, starts a fresh
# private PostgreSQL cluster in .data/bench-pg (port $COORDINATOR_BENCH_PG_PORT, default 64349, synchronous_commit
# on, pg_stat_statements loaded), runs bench/Coordinator.Bench and stops the cluster. Results: bench/results/latest.md
# and latest.json (the Markdown table BENCHMARKS.md quotes).
#
# The service scenarios measure the last commit before the Orleans move (tag pg-engine, d51324c) beside this build in
# the same run: it is checked out as a detached git worktree in .data/pg-engine/src and built there (once per commit).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. scripts/common.sh
. scripts/pg.sh

pg_ensure_installed
require_dotnet
command -v node >/dev/null 2>&1 || die "Node.js is needed for the peers (apt-get install nodejs npm)"

quick=0 only="" baseline=1
prev=""
for arg in "$@"; do
  [[ "$arg" == "--quick" ]] && quick=1
  [[ "$arg" == "--no-baseline" ]] && baseline=0
  [[ "$prev" == "--only" ]] && only=$arg
  prev=$arg
done
wants() { [[ -z "$only" || ",$only," == *",$1,"* ]]; }

# 1. Peers (pg-boss, graphile-worker), pinned in bench/peers/package-lock.json; only the engine comparison runs them.
if wants engine && { [[ ! -d bench/peers/node_modules ]] || [[ bench/peers/package-lock.json -nt bench/peers/node_modules ]]; }; then
  say "installing the peers (npm ci in bench/peers)"
  (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error </dev/null)
  touch bench/peers/node_modules
fi

# 2. Build.
say "building (Release)"
build_log=$(mktemp)
if ! dotnet build bench/Coordinator.Bench -c Release --nologo -v quiet -tl:off -clp:ErrorsOnly >"$build_log" 2>&1 </dev/null ||
   ! dotnet build Coordinator.Silo -c Release --nologo -v quiet -tl:off -clp:ErrorsOnly >>"$build_log" 2>&1 </dev/null; then
  cat "$build_log" >&2; rm -f "$build_log"; die "build failed"
fi
rm -f "$build_log"

# 3. The baseline: pg-engine, the last commit before the Orleans move, for the service scenarios only (the engine
# comparison links this build's engine in-process).
PG_ENGINE_HASH=d51324c
BENCH_BASELINE_DLL="" BENCH_BASELINE_DESCRIPTION=""
needs_baseline=0
for section in dispatch lifecycle backlog parked priority scale failover; do wants "$section" && needs_baseline=1; done
baseline_commit=""
if [[ $baseline -eq 1 && $needs_baseline -eq 1 ]]; then
  if ! git rev-parse --git-dir >/dev/null 2>&1; then
    say "NOTE: no git repository here (a tarball?): the service is measured without pg-engine beside it"
  elif ! baseline_commit=$(git rev-parse -q --verify 'pg-engine^{commit}' || git rev-parse -q --verify "$PG_ENGINE_HASH^{commit}"); then
    say "NOTE: neither the tag pg-engine nor commit $PG_ENGINE_HASH is in this clone (shallow?): the service is measured without pg-engine beside it"
    baseline_commit=""
  fi
fi
if [[ -n "$baseline_commit" ]]; then
  git rev-parse -q --verify 'refs/tags/pg-engine' >/dev/null || git tag pg-engine "$baseline_commit"
  src="$ROOT/.data/pg-engine/src"
  # A plain folder there would answer for the enclosing checkout: only a worktree rooted at $src counts.
  if [[ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null)" != "$(realpath -m "$src")" ]]; then
    src_head=""
  else
    src_head=$(git -C "$src" rev-parse -q --verify HEAD || true)
  fi
  if [[ "$src_head" != "$baseline_commit" ]]; then
    say "checking out pg-engine (${baseline_commit:0:7}) in .data/pg-engine/src"
    if [[ -n "$src_head" ]]; then
      git -C "$src" checkout -q --detach "$baseline_commit"
    else
      rm -rf "$src"
      git worktree prune
      mkdir -p "$(dirname "$src")"
      git worktree add -q --detach "$src" "$baseline_commit"
    fi
  fi
  BENCH_BASELINE_DLL="$src/Coordinator.Api/bin/Release/net10.0/Coordinator.Api.dll"
  stamp="$ROOT/.data/pg-engine/built"
  if [[ ! -f "$BENCH_BASELINE_DLL" || "$(cat "$stamp" 2>/dev/null)" != "$baseline_commit" ]]; then
    say "building pg-engine (${baseline_commit:0:7}, Release)"
    build_log=$(mktemp)
    if ! (cd "$src" && dotnet build Coordinator.Api -c Release --nologo -v quiet -tl:off -clp:ErrorsOnly) >"$build_log" 2>&1 </dev/null; then
      cat "$build_log" >&2; rm -f "$build_log"; die "the pg-engine build failed (skip it with --no-baseline)"
    fi
    rm -f "$build_log"
    echo "$baseline_commit" >"$stamp"
  fi
  BENCH_BASELINE_DESCRIPTION="pg-engine (${baseline_commit:0:7})"
fi
export BENCH_BASELINE_DLL BENCH_BASELINE_DESCRIPTION

# 4. A fresh database cluster.
BENCH_PG_DIR="$ROOT/.data/bench-pg"
pg_port=${COORDINATOR_BENCH_PG_PORT:-64349}
pg_destroy_private "$BENCH_PG_DIR"
trap 'pg_stop_private "$BENCH_PG_DIR" || true' EXIT
pg_start_private "$BENCH_PG_DIR" "$pg_port"

export BENCH_PG BENCH_API_DLL BENCH_PEERS_DIR BENCH_PG_DESCRIPTION
BENCH_PG="$(pg_connection_string "$pg_port" postgres);Maximum Pool Size=50"
BENCH_API_DLL="$ROOT/Coordinator.Silo/bin/Release/net10.0/Coordinator.Silo.dll"
BENCH_PEERS_DIR="$ROOT/bench/peers"
BENCH_PG_DESCRIPTION="$("$PG_BIN/postgres" --version | sed 's/postgres (PostgreSQL) /PostgreSQL /'), local, shared_buffers 256MB, synchronous_commit on, fsync on, max_connections 300, default settings otherwise"

# 10,000 parked polls need 20,000+ sockets between the load generator and the node.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

say "running the benchmarks $*"
dotnet "$ROOT/bench/Coordinator.Bench/bin/Release/net10.0/Coordinator.Bench.dll" --out "$ROOT/bench/results" "$@" </dev/null
pg_stop_private "$BENCH_PG_DIR" || true

# 5. The grid-worker agent's side (its own database and node): coordinator overhead per job and idle CPU.
if wants worker; then
  say "measuring the grid-worker agent (bench/worker/run.sh)"
  if [[ $quick -eq 1 ]]; then export BENCH_JOBS=${BENCH_JOBS:-100} BENCH_IDLE_SECONDS=${BENCH_IDLE_SECONDS:-5}; fi
  bash bench/worker/run.sh 2>&1 | tee "$ROOT/bench/results/worker.txt"
fi

#!/usr/bin/env bash
# bench/run.sh — the benchmark harness in one command.
#
#   ./bench/run.sh                 the full run (22-30 minutes on 2 cores)
#   ./bench/run.sh --quick         smaller sizes, one run each (under 5 minutes)
#   ./bench/run.sh --only engine,dispatch,lifecycle,backlog,parked,priority,scale,worker
#   ./bench/run.sh --only engine --scenarios drain,latency,steady --peers pgboss,graphile|none
#   ./bench/run.sh --repeat 5      runs per figure (the median is reported; default 3, quick 1)
#   ./bench/run.sh --no-pin        do not pin the node and the load generator to separate CPUs
#
# It installs PostgreSQL (apt) and the peers (npm ci in bench/peers) when missing, builds Release, starts a fresh
# private PostgreSQL cluster in .data/bench-pg (port $COORDINATOR_BENCH_PG_PORT, default 64349, synchronous_commit
# on, pg_stat_statements loaded), runs bench/Coordinator.Bench and stops the cluster. Results: bench/results/latest.md
# and latest.json (the Markdown table BENCHMARKS.md quotes).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. scripts/common.sh
. scripts/pg.sh

pg_ensure_installed
require_dotnet
command -v node >/dev/null 2>&1 || die "Node.js is needed for the peers (apt-get install nodejs npm)"

# 1. Peers (pg-boss, graphile-worker), pinned in bench/peers/package-lock.json.
if [[ ! -d bench/peers/node_modules ]] || [[ bench/peers/package-lock.json -nt bench/peers/node_modules ]]; then
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

# 3. A fresh database cluster.
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

# 4. The grid-worker agent's side (its own database and node): coordinator overhead per job and idle CPU.
quick=0 only=""
prev=""
for arg in "$@"; do
  [[ "$arg" == "--quick" ]] && quick=1
  [[ "$prev" == "--only" ]] && only=$arg
  prev=$arg
done
if [[ -z "$only" || ",$only," == *",worker,"* ]]; then
  say "measuring the grid-worker agent (bench/worker/run.sh)"
  if [[ $quick -eq 1 ]]; then export BENCH_JOBS=${BENCH_JOBS:-100} BENCH_IDLE_SECONDS=${BENCH_IDLE_SECONDS:-5}; fi
  bash bench/worker/run.sh 2>&1 | tee "$ROOT/bench/results/worker.txt"
fi

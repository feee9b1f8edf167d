#!/usr/bin/env bash
# bench/worker/run.sh — what the grid costs a worker, measured from the grid-worker agent.
#
#   bench/worker/run.sh                        1000 jobs, 60 s of idle polling
#   BENCH_JOBS=200 BENCH_IDLE_SECONDS=20 bench/worker/run.sh
#
# 1. Coordinator overhead per job: a private PostgreSQL and one coordinator node (Release) on loopback, a fake
#    Ollama (node, fake-ollama.js) that answers at once, BENCH_JOBS jobs queued before the agent starts. The agent
#    (--json) logs coordinator_ms for each job: the time from sending the poll that brought the job to the result
#    being acknowledged, minus the time spent in the backend call — i.e. poll + start + result. p50/p95/max printed.
# 2. Idle CPU while long-polling: the agent with nothing to do for BENCH_IDLE_SECONDS (after 5 s of warm-up);
#    CPU time from /proc/PID/stat, printed as a percentage of one core.
#
# Needs: the .NET 10 SDK, node, curl; PostgreSQL is installed like run.sh does. Ports: BENCH_PG_PORT (64369),
# BENCH_PORT (3190) and BENCH_PORT+1 for the fake. Everything it starts is stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
. scripts/common.sh
. scripts/pg.sh

JOBS=${BENCH_JOBS:-1000}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-60}
PG_PORT=${BENCH_PG_PORT:-64369}
PORT=${BENCH_PORT:-3190}
FAKE_PORT=$((PORT + 1))
WORK="$ROOT/.data/bench-worker"
PG_DATA="$WORK/pg"
API="http://127.0.0.1:$PORT/api/v1"
MODEL=bench:1b
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pg_stop_private "$PG_DATA" || true
}
trap cleanup EXIT

pg_ensure_installed
require_dotnet
command -v node >/dev/null || die "node is needed for the fake Ollama (apt-get install nodejs)"
command -v curl >/dev/null || die "curl is needed"

say "building Coordinator.Silo and GridWorker (Release)"
dotnet build Coordinator.Silo -c Release --nologo -v quiet -clp:ErrorsOnly </dev/null >/dev/null
dotnet build GridWorker -c Release --nologo -v quiet -clp:ErrorsOnly </dev/null >/dev/null
WORKER="dotnet $ROOT/GridWorker/bin/Release/net10.0/grid-worker.dll"

mkdir -p "$WORK"
pg_destroy_private "$PG_DATA"
pg_start_private "$PG_DATA" "$PG_PORT"
psql_() { "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U coordinator -d coordinator -v ON_ERROR_STOP=1 "$@"; }

say "starting a coordinator node on :$PORT and the fake Ollama on :$FAKE_PORT"
# Rate limits off: the bench measures the worker path, from one key and one address.
ConnectionStrings__Postgres=$(pg_connection_string "$PG_PORT") Logging__LogLevel__Default=Warning RateLimits__Enabled=false \
  dotnet Coordinator.Silo/bin/Release/net10.0/Coordinator.Silo.dll --urls "http://127.0.0.1:$PORT" >"$WORK/coordinator.log" 2>&1 &
pids+=($!)
node bench/worker/fake-ollama.js "$FAKE_PORT" "$MODEL" &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "$API/health" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$API/health" >/dev/null || die "the coordinator did not start (see $WORK/coordinator.log)"

# An account without daily limits, so the free plan's 100 requests do not hold the backlog.
signup=$(curl -fs -X POST "$API/accounts" -H 'Content-Type: application/json' -d '{"name":"bench"}')
KEY=$(echo "$signup" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
ACCOUNT=$(echo "$signup" | sed -n 's/.*"account_id":\([0-9]*\).*/\1/p')
psql_ -c "INSERT INTO plans (id, name) VALUES ('bench', 'bench') ON CONFLICT (id) DO NOTHING; UPDATE accounts SET plan = 'bench' WHERE id = $ACCOUNT;"
WKEY=$(curl -fs -X POST "$API/keys" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"name":"bench-worker"}' |
       sed -n 's/.*"key":"\([^"]*\)".*/\1/p')

say "queueing $JOBS jobs"
for _ in $(seq 1 "$JOBS"); do
  echo "{\"model\":\"$MODEL\",\"model_match\":\"exact\",\"prompt\":\"bench\"}"
done | while read -r body; do
  curl -fs -o /dev/null -X POST "$API/jobs" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$body"
done

say "serving them with grid-worker --json"
log="$WORK/worker-jobs.log"
$WORKER --coordinator "http://127.0.0.1:$PORT" --api-key "$WKEY" --backend-url "http://127.0.0.1:$FAKE_PORT" --json >"$log" 2>&1 &
worker=$!
pids+=($worker)
deadline=$((SECONDS + 600))
while [[ $(grep -c '"event":"job_completed"' "$log" || true) -lt $JOBS ]]; do
  [[ $SECONDS -lt $deadline ]] || die "the worker did not finish $JOBS jobs in 10 minutes (see $log)"
  kill -0 "$worker" 2>/dev/null || die "the worker exited (see $log)"
  sleep 0.5
done
kill -TERM "$worker"; wait "$worker" || true

grep '"event":"job_completed"' "$log" | sed -n 's/.*"coordinator_ms":\([0-9.]*\).*/\1/p' | sort -n >"$WORK/coordinator_ms.txt"
n=$(wc -l <"$WORK/coordinator_ms.txt")
pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$WORK/coordinator_ms.txt"; }
echo "coordinator overhead per job (poll + start + result, backend time excluded), $n jobs:"
echo "  p50 $(pct 50) ms   p95 $(pct 95) ms   p99 $(pct 99) ms   max $(tail -n 1 "$WORK/coordinator_ms.txt") ms"

say "idle: grid-worker long-polling with no jobs for $IDLE_SECONDS s"
$WORKER --coordinator "http://127.0.0.1:$PORT" --api-key "$WKEY" --backend-url "http://127.0.0.1:$FAKE_PORT" >"$WORK/worker-idle.log" 2>&1 &
idle=$!
pids+=($idle)
# Measure once the agent is parked in its long-poll (the node counts it in /health), not after a guessed pause.
for _ in $(seq 1 300); do
  [[ $(curl -fs "$API/health" | grep -o '"parked_polls":[0-9]*' | cut -d: -f2) -ge 1 ]] 2>/dev/null && break
  kill -0 "$idle" 2>/dev/null || die "the idle worker exited (see $WORK/worker-idle.log)"
  sleep 0.1
done
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks "$idle")
sleep "$IDLE_SECONDS"
after=$(ticks "$idle")
awk -v t=$((after - before)) -v hz="$hz" -v s="$IDLE_SECONDS" \
  'BEGIN { printf "idle CPU while long-polling: %.3f%% of one core (%d ticks of 1/%d s in %d s)\n", 100 * t / hz / s, t, hz, s }'

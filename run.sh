#!/usr/bin/env bash
# run.sh — run the coordinator on its embedded default.
#
#   ./run.sh                      build (Release) and serve on http://0.0.0.0:3000
#   PORT=8080 ./run.sh            another HTTP port
#
# Unless ConnectionStrings__Postgres is already set, a private PostgreSQL
# cluster is started in .data/pg (port $COORDINATOR_PG_PORT, default 64329)
# and stopped again when the app exits. The whole environment is passed to
# the app, so any ASP.NET Core setting works, e.g.
#   Webhooks__AllowPrivateNetworks=true ./run.sh
#
# The app creates a development account on start when .data/dev-api-key is
# missing or stale, writes the key there and prints it with a curl example.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
. scripts/common.sh
. scripts/pg.sh

# 1. Tools.
pg_ensure_installed
require_dotnet

# 2. Build. Output goes to a file and is shown only when the build fails.
#    (A file, not a pipe: build-server processes that outlive the build would
#    otherwise keep a pipe open.)
say "building Coordinator.Silo (Release, .NET SDK $(dotnet --version))"
build_log=$(mktemp)
if ! dotnet build Coordinator.Silo -c Release --nologo -v quiet -tl:off -clp:ErrorsOnly \
     >"$build_log" 2>&1 </dev/null; then
  grep -v -e '^[[:space:]]*$' "$build_log" >&2 || true
  rm -f "$build_log"
  die "build failed (errors above)"
fi
rm -f "$build_log"

# 3. Database.
PG_DATA_DIR="$ROOT/.data/pg"
we_started_pg=0
if [[ -n "${ConnectionStrings__Postgres:-}" ]]; then
  say "using ConnectionStrings__Postgres from the environment"
else
  pg_port=${COORDINATOR_PG_PORT:-64329}
  pg_start_private "$PG_DATA_DIR" "$pg_port"
  we_started_pg=$PG_STARTED_NOW
  ConnectionStrings__Postgres=$(pg_connection_string "$pg_port")
  export ConnectionStrings__Postgres
  say "PostgreSQL: $ConnectionStrings__Postgres"
fi

# 4. Development API key file (the app fills it in).
mkdir -p "$ROOT/.data"
export DevAccount__KeyFile="$ROOT/.data/dev-api-key"
# 4b. A local operator key for the operator surfaces (/operator/...: the Orleans Dashboard, the cluster view, payouts,
#     account disable/enable), unless operator keys are configured already. The key is kept in .data/operator-key
#     (the app sees only its SHA-256, as in production: Operator:KeyHashes).
if [[ -z "${Operator__KeyHashes:-}${Operator__KeyHashes__0:-}" ]]; then
  operator_key_file="$ROOT/.data/operator-key"
  if [[ ! -s "$operator_key_file" ]]; then
    (umask 077; printf 'op_%s' "$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')" >"$operator_key_file")
  fi
  operator_key=$(cat "$operator_key_file")
  export Operator__KeyHashes__0="sha256:$(printf '%s' "$operator_key" | sha256sum | cut -d' ' -f1)"
  say "operator key (in .data/operator-key): $operator_key"
  say "  the Orleans Dashboard: http://localhost:${PORT:-3000}/operator/dashboard/ (sign in with the key), the cluster view:"
  say "  curl -s http://localhost:${PORT:-3000}/operator/cluster -H 'Authorization: Bearer $operator_key'"
fi
# A local development run: the host is Development unless told otherwise, so that in stub mode (no Lightning:LnbitsUrl)
# the Lightning agent's invoices can be paid through POST /api/dev/stub/pay/{paymentHash}, a route never mapped in Production.
export ASPNETCORE_ENVIRONMENT="${ASPNETCORE_ENVIRONMENT:-Development}"
# Attachments (the local-disk blob store) live beside the database unless configured otherwise.
export Blobs__LocalPath="${Blobs__LocalPath:-$ROOT/.data/blobs}"

app=(dotnet "$ROOT/Coordinator.Silo/bin/Release/net10.0/Coordinator.Silo.dll"
     --urls "http://0.0.0.0:${PORT:-3000}")
say "starting the coordinator on http://0.0.0.0:${PORT:-3000} (Ctrl-C stops it)"

# 5. Run. When the cluster is someone else's (already running, or an external
#    connection string), simply become the app. Otherwise keep this shell
#    around to stop the cluster after the app has exited.
if [[ $we_started_pg -ne 1 ]]; then
  exec "${app[@]}"
fi

trap 'pg_stop_private "$PG_DATA_DIR" || true' EXIT
"${app[@]}" <&0 &
app_pid=$!
# A background job of a script ignores SIGINT, so Ctrl-C (and TERM/HUP) are
# caught here and forwarded to the app as TERM: ASP.NET Core shuts down
# gracefully, then the EXIT trap stops the cluster.
trap 'kill -TERM "$app_pid" 2>/dev/null || true' INT TERM HUP
rc=0
while :; do
  wait "$app_pid" && rc=0 || rc=$?
  kill -0 "$app_pid" 2>/dev/null || break   # a trapped signal interrupted wait
done
exit "$rc"

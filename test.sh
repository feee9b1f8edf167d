#!/usr/bin/env bash
# test.sh — provision the same way as run.sh, then run every test.
#
#   ./test.sh                               all tests
#   ./test.sh --filter "FullyQualifiedName~Jobs"   extra args go to dotnet test
#
# Steps: install PostgreSQL if missing; install the npm test tools pinned in
# tests/tools/package-lock.json (Prism, s3rver, the openai client, kubernetes-models, dockerfile-utils);
# install docker-compose and systemd-analyze for the deploy/ tests; start a fresh private cluster in
# .data/test-pg (port $COORDINATOR_TEST_PG_PORT, default 64339); run
# `dotnet test` on Orleans.sln writing one TestResults/*.trx per test
# project (default names, which the logger keeps unique; a fixed LogFileName
# would let the last project overwrite the others); stop the
# cluster; sum the TRX counters.
#
# The LAST line of output is always "N passed, N failed" (CI reads it);
# when the run could not produce results it is "0 passed, 1 failed".
# Exit status: 0 only when dotnet test succeeded and no test failed.
#
# Environment given to the tests:
#   COORDINATOR_TEST_PG  Npgsql connection string (Database=postgres; the
#                        fixtures create their own databases)
#   COORDINATOR_PRISM    path of the prism executable
#   COORDINATOR_S3RVER   path of s3rver (an S3-compatible server the blob tests start)
#   COORDINATOR_NODE     (optional) node for tests/tools/openai-client.mjs; default: node on the PATH
#   COORDINATOR_DOCKER_COMPOSE (optional) docker-compose for the deploy/ tests; default: docker-compose on the PATH
#   COORDINATOR_SPEC     grid-api.openapi.yaml from ../shared/specs (may be
#                        set beforehand to point elsewhere)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
. scripts/common.sh
. scripts/pg.sh

TEST_PG_DIR="$ROOT/.data/test-pg"
TOOLS_DIR="$ROOT/tests/tools"
RESULTS_DIR="$ROOT/TestResults"
pg_running=0
summary_printed=0

# Whatever happens, stop the cluster and make the summary the last line.
finish() {
  local rc=$?
  if [[ $pg_running -eq 1 ]]; then pg_stop_private "$TEST_PG_DIR" || true; fi
  if [[ $summary_printed -ne 1 ]]; then
    echo "0 passed, 1 failed"
    [[ $rc -ne 0 ]] || rc=1
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Tools: PostgreSQL, .NET SDK, Node.
pg_ensure_installed
require_dotnet
command -v npm >/dev/null 2>&1 || die "npm is not installed (apt-get install nodejs npm)"
# The dashboard tests drive Debian's headless Chromium (Playwright's own browser download does not work here).
if [[ -z "${COORDINATOR_CHROMIUM:-}" && ! -x /usr/bin/chromium ]]; then
  say "installing chromium for the dashboard tests (apt)"
  _pg_as_root apt-get update -q
  _pg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-liberation </dev/null ||
    die "could not install chromium (apt-get install chromium fonts-liberation)"
fi
# The receipt tests compare with Python's json.dumps and verify signatures with python3-cryptography; the session
# macaroons are checked against python3-pymacaroons.
# Debian's interpreter when there is one (the macaroon tests run it: a python3 earlier on PATH may not see Debian's packages).
if ! { [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import cryptography, pymacaroons'; } >/dev/null 2>&1; then
  say "installing python3, python3-cryptography and python3-pymacaroons for the receipt and macaroon tests (apt)"
  _pg_as_root apt-get update -q
  _pg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-cryptography python3-pymacaroons </dev/null ||
    die "could not install python3-cryptography or python3-pymacaroons (apt-get install python3 python3-cryptography python3-pymacaroons)"
fi

# The deploy/ tests validate deploy/compose.yaml with Debian's docker-compose (`config` needs no Docker engine) and
# deploy/coordinator.service with systemd-analyze (verify runs offline, without systemd running).
deploy_missing=()
[[ -n "${COORDINATOR_DOCKER_COMPOSE:-}" ]] || command -v docker-compose >/dev/null 2>&1 || deploy_missing+=(docker-compose)
command -v systemd-analyze >/dev/null 2>&1 || deploy_missing+=(systemd)
if (( ${#deploy_missing[@]} > 0 )); then
  say "installing ${deploy_missing[*]} for the deploy/ tests (apt)"
  _pg_as_root apt-get update -q
  _pg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${deploy_missing[@]}" </dev/null ||
    die "could not install ${deploy_missing[*]} (apt-get install ${deploy_missing[*]})"
fi

# 2. npm test tools. `npm ci` runs only when node_modules is missing or the
#    lock file changed since the last install (its hash is kept in a stamp).
stamp="$TOOLS_DIR/node_modules/.coordinator-lock.sha256"
if [[ ! -f "$TOOLS_DIR/package-lock.json" ]]; then
  say "tests/tools/package-lock.json missing; creating it with npm install (commit it)"
  (cd "$TOOLS_DIR" && npm install --no-audit --no-fund --loglevel=error </dev/null)
  rm -f "$stamp"
fi
lock_hash=$(sha256sum "$TOOLS_DIR/package-lock.json" | cut -d' ' -f1)
if [[ ! -x "$TOOLS_DIR/node_modules/.bin/prism" || "$(cat "$stamp" 2>/dev/null || true)" != "$lock_hash" ]]; then
  say "installing test tools (npm ci in tests/tools)"
  (cd "$TOOLS_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
  echo "$lock_hash" > "$stamp"
fi
export COORDINATOR_PRISM="$TOOLS_DIR/node_modules/.bin/prism"
[[ -x "$COORDINATOR_PRISM" ]] || die "prism not found at $COORDINATOR_PRISM after npm ci"
export COORDINATOR_S3RVER="$TOOLS_DIR/node_modules/.bin/s3rver"
[[ -x "$COORDINATOR_S3RVER" ]] || die "s3rver not found at $COORDINATOR_S3RVER after npm ci"
# The OpenAI front door's tests run tests/tools/openai-client.mjs with node, which imports the openai package from here.
[[ -f "$TOOLS_DIR/node_modules/openai/package.json" ]] || die "the openai npm package is not in $TOOLS_DIR/node_modules after npm ci"
# The deploy/ tests run tests/tools/validate-deploy.mjs: Kubernetes schemas, the Dockerfile validator, a YAML parser.
for package in kubernetes-models dockerfile-utils yaml; do
  [[ -f "$TOOLS_DIR/node_modules/$package/package.json" ]] || die "the $package npm package is not in $TOOLS_DIR/node_modules after npm ci"
done

# 3. The OpenAPI spec lives in the shared folder beside the repository.
if [[ -z "${COORDINATOR_SPEC:-}" ]]; then
  COORDINATOR_SPEC="$(cd .. && pwd)/shared/specs/grid-api.openapi.yaml"
fi
export COORDINATOR_SPEC
[[ -f "$COORDINATOR_SPEC" ]] ||
  die "OpenAPI spec not found at $COORDINATOR_SPEC (expected the 'shared' folder next to the repo, or set COORDINATOR_SPEC)"

# 4. A fresh database cluster for every run.
pg_port=${COORDINATOR_TEST_PG_PORT:-64339}
pg_destroy_private "$TEST_PG_DIR"
pg_running=1
pg_start_private "$TEST_PG_DIR" "$pg_port"
export COORDINATOR_TEST_PG
COORDINATOR_TEST_PG=$(pg_connection_string "$pg_port" postgres)
say "COORDINATOR_TEST_PG=$COORDINATOR_TEST_PG"

# 5. Run the tests; a failure here must not stop the script.
mkdir -p "$RESULTS_DIR"
rm -f "$RESULTS_DIR"/*.trx
say "dotnet test Orleans.sln -c Release $*"
test_rc=0
dotnet test Orleans.sln -c Release \
  --logger trx --results-directory "$RESULTS_DIR" "$@" </dev/null ||
  test_rc=$?

# 6. Stop the cluster before reporting.
pg_stop_private "$TEST_PG_DIR" || true
pg_running=0

# 7. Sum the <Counters .../> of every TRX file. "failed" also counts tests
#    that errored, timed out or were aborted. Plain grep/sed, no python.
attr() { # attr NAME "<Counters ...>" -> number (0 when absent)
  local v
  v=$(printf ' %s' "$2" | sed -n "s/.*[[:space:]]$1=\"\([0-9]*\)\".*/\1/p")
  echo "${v:-0}"
}
passed=0 failed=0 files=0
for trx in "$RESULTS_DIR"/*.trx; do
  [[ -f "$trx" ]] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1 || true)
  [[ -n "$counters" ]] || continue
  files=$((files + 1))
  passed=$((passed + $(attr passed "$counters")))
  for a in failed error timeout aborted; do
    failed=$((failed + $(attr "$a" "$counters")))
  done
done

if [[ $files -eq 0 ]]; then
  echo "test.sh: no test results (build failure or test host crash; dotnet test exit $test_rc)" >&2
  passed=0 failed=1
elif [[ $test_rc -ne 0 && $failed -eq 0 ]]; then
  # e.g. one project did not build while another ran green.
  echo "test.sh: dotnet test exited with $test_rc although no test failed; counting it as a failure" >&2
  failed=1
fi

rc=0
if [[ $test_rc -ne 0 || $failed -ne 0 ]]; then rc=1; fi
summary_printed=1
echo "$passed passed, $failed failed"
exit "$rc"

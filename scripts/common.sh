# scripts/common.sh — small helpers shared by run.sh, test.sh, .ci/run and bench/run.sh (source it).

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

say() { echo "==> $*"; }
die() { echo "$(basename "$0"): ERROR: $*" >&2; exit 1; }

# The .NET 10 SDK must be on PATH (Debian 12 does not package it).
require_dotnet() {
  if ! { command -v dotnet && dotnet --version; } >/dev/null 2>&1; then
    die "the .NET SDK is not installed (need .NET 10: https://dot.net/download), or 'dotnet' is not on PATH"
  fi
}

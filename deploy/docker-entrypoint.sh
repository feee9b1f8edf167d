#!/bin/sh
# docker-entrypoint.sh: starts one coordinator silo. The image's ENTRYPOINT; a published folder runs the same way:
#   COORDINATOR_APP_DIR=/path/to/published ConnectionStrings__Postgres=... deploy/docker-entrypoint.sh [args]
#
# Settings are the silo's own configuration keys as environment variables (README "Configuration", deploy/README.md).
# What this script adds:
#   - ConnectionStrings__Postgres must be set; it stops with a message that says so otherwise.
#   - Cluster__AdvertisedAddress, when unset, is the pod's IP (POD_IP, from Kubernetes' downward API) or else the
#     IPv4 address the container's host name resolves to (Docker gives each container one on its network). The
#     silo's own default, 127.0.0.1, only works for silos on one machine.
#   - exec: the silo replaces this shell, so SIGTERM (docker stop, Kubernetes, systemd) reaches it directly and it
#     leaves the cluster gracefully.
# Arguments go to the silo (e.g. `payouts list`, `receipt-keys …`, `--urls …`).
set -eu

app_dir=${COORDINATOR_APP_DIR:-/app}

if [ -z "${ConnectionStrings__Postgres:-}" ]; then
  echo "coordinator: ConnectionStrings__Postgres is not set. Pass the database, e.g." >&2
  echo "  -e ConnectionStrings__Postgres='Host=db;Port=5432;Username=coordinator;Password=...;Database=coordinator'" >&2
  exit 2
fi

if [ -z "${Cluster__AdvertisedAddress:-}" ]; then
  if [ -n "${POD_IP:-}" ]; then
    Cluster__AdvertisedAddress=$POD_IP
    source_of_address="POD_IP"
  else
    host=$(cat /proc/sys/kernel/hostname)
    # getent prints "ADDRESS STREAM NAME" lines: the first field of the first line.
    address=$(getent ahostsv4 "$host" 2>/dev/null | { read -r first _ || true; echo "${first:-}"; })
    if [ -z "$address" ]; then
      echo "coordinator: cannot find this container's IP address (the host name $host does not resolve)." >&2
      echo "  Set Cluster__AdvertisedAddress to an address the other silos reach (POD_IP in Kubernetes)." >&2
      exit 2
    fi
    Cluster__AdvertisedAddress=$address
    source_of_address="the host name $host"
  fi
  export Cluster__AdvertisedAddress
  echo "coordinator: advertising $Cluster__AdvertisedAddress to the other silos (from $source_of_address)"
fi

exec dotnet "$app_dir/Coordinator.Silo.dll" "$@"

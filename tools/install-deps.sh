#!/bin/bash
# Install the Debian packages slurm-qpu's build, lab and tests need (idempotent, as root).
#   tools/install-deps.sh [--no-start] [extra package ...]
# --no-start: the packages' services are not started by their installation (a test runs
# its own, by PID: HAProxy); a policy-rc.d says so to invoke-rc.d for this install only.
set -euo pipefail
no_start=
if [ "${1:-}" = --no-start ]; then no_start=1; shift; fi
PKGS=(slurmctld slurmd slurm-client munge libslurm-dev python3-dev python3-venv gcc make
      iproute2 util-linux procps lua5.1 "$@")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2; exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ -n "$no_start" ] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# tools/install-deps.sh --no-start: no service starts while it installs\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq -o Acquire::Check-Valid-Until=false
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

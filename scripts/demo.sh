#!/usr/bin/env bash
# Runs the hub with its embedded NATS and PostgreSQL and a simulated Ulsan plant, with a live view.
# Creates .venv if missing and installs the project first. Ctrl-C stops everything cleanly.
# Extra arguments go to `safetyhub demo` (e.g. --http-port 8090, --data-dir DIR, --plain).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv

# As root, PostgreSQL runs as an unprivileged account that must be able to reach the data dir.
# A checkout under a private home (mode 0700) is not reachable: use a shared place and say so.
if [ "$(id -u)" = 0 ] && [ -z "${SAFETYHUB_DATA_DIR:-}" ] && command -v setpriv >/dev/null 2>&1; then
  if ! setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "cd '$PWD'" 2>/dev/null; then
    export SAFETYHUB_DATA_DIR=/var/tmp/safetyhub-demo
    echo "note: $PWD is not reachable by an unprivileged account; demo data goes to $SAFETYHUB_DATA_DIR" >&2
  fi
fi
exec .venv/bin/safetyhub demo "$@"

#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration and end-to-end tests.
# Creates .venv if missing and installs the project with its dev extras first.
# Fetches the video tests' footage and fall model once (scripts/fetch_test_media.sh).
# Tests run against embedded NATS and PostgreSQL, or the servers named by SAFETYHUB_NATS_URL /
# SAFETYHUB_DATABASE_URL (the suite owns those servers: never point it at production).
# The suite includes a bounded fuzz test of the whole HTTP surface (schemathesis against openapi.yaml,
# hypothesis for bodies and query strings) against a real hub.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k parse
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv dev
# Recorded footage and the fall model for the video tests, into a cache outside the repository
# (once; what cannot be fetched is said, and its tests skip naming it).
bash scripts/fetch_test_media.sh

echo "== ruff" >&2
.venv/bin/ruff check services tests scripts
echo "== mypy --strict services/" >&2
.venv/bin/mypy
echo "== generated contracts are fresh, and tests" >&2
exec .venv/bin/python -m pytest "$@"

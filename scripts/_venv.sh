# Sourced by demo.sh and test.sh: find Python >= 3.11, create .venv if missing, install the project.
# Usage: . scripts/_venv.sh; ensure_venv [EXTRAS]    (EXTRAS e.g. "dev"; empty for the runtime only)
# (A function, not arguments to `.`: a sourced file given no arguments sees the caller's.)

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "safetyhub needs Python 3.11 or newer; none found (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local extras="${1:-}" py spec stamp
  if [ ! -x .venv/bin/python ]; then
    py="$(find_python)"
    echo "creating .venv with $("$py" --version)" >&2
    "$py" -m venv .venv
  fi
  spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  # Reinstall only when the project's requirements changed since the last install.
  stamp=".venv/.safetyhub-installed-$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$spec"
    touch "$stamp"
  fi
}

#!/usr/bin/env bash
# Generates the Python modules and type stubs for proto/ into the contracts package.
# Usage: scripts/gen_proto.sh [OUT_DIR]   (default: services/common/contracts/_generated)
# The freshness test runs this into a temporary directory and compares.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/services/common/contracts/_generated}"
python="${PYTHON:-python}"
[ -x "$here/.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && python="$here/.venv/bin/python"

mkdir -p "$out"
find "$out" -name '*_pb2.py' -delete -o -name '*_pb2.pyi' -delete
# protoc finds protoc-gen-mypy on PATH: put the interpreter's scripts first.
export PATH="$(dirname "$("$python" -c "import sys; print(sys.executable)")"):$PATH"
cd "$here/proto"
protos=$(find safetyhub -name '*.proto' | LC_ALL=C sort)
# shellcheck disable=SC2086
"$python" -m grpc_tools.protoc -I . --python_out="$out" --mypy_out="$out" $protos

# protoc writes absolute imports of the proto package ("from safetyhub.v1 import x_pb2");
# rewrite them to the package the modules live in, so nothing needs to touch sys.path.
pkg="services.common.contracts._generated"
find "$out" \( -name '*_pb2.py' -o -name '*_pb2.pyi' \) -print0 \
  | xargs -0 sed -i -E "s/^(from|import) safetyhub\.v1/\1 ${pkg}.safetyhub.v1/"
for d in "$out" "$out/safetyhub" "$out/safetyhub/v1" "$out/safetyhub/sparkplug"; do
  [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done

"""The committed protobuf modules are what scripts/gen_proto.sh makes from proto/ today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "proto"
GENERATED = REPO / "services" / "common" / "contracts" / "_generated"
SCRIPT = REPO / "scripts" / "gen_proto.sh"
PATTERNS = ("*_pb2.py", "*_pb2.pyi", "__init__.py")
HINT = "the generated contracts are stale: run scripts/gen_proto.sh and commit the result"


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for pattern in PATTERNS
        for path in root.rglob(pattern)
        if "__pycache__" not in path.parts
    }


def test_committed_modules_match_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"scripts/gen_proto.sh failed:\n{result.stderr}"

    fresh, committed = generated_files(out), generated_files(GENERATED)

    assert sorted(fresh) == sorted(committed), HINT
    differing = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not differing, f"{HINT} (differs: {', '.join(differing)})"


def test_every_proto_has_a_generated_module_and_stub() -> None:
    protos = sorted(PROTO.rglob("*.proto"))
    assert protos, "no .proto files found under proto/"

    for proto in protos:
        stem = proto.relative_to(PROTO).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi"):
            module = GENERATED / f"{stem}{suffix}"
            assert module.is_file(), f"{proto.relative_to(REPO)} has no {module.name}: {HINT}"

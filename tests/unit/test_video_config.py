"""The `video:` section is checked strictly: a bad camera stops start-up with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.hub.registry import REGISTRY

GOOD = """\
video:
  cameras:
    - site: ulsan-refinery
      device: cam-tf-501
      source: rtsp://viewer:secret@10.20.0.15:554/stream1
      detector: {kind: hog}
      motion:
        masks: [[[0.8, 0.0], [1.0, 0.0], [1.0, 0.2]]]
      zones:
        - id: tank-bund
          polygon: [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
          rules:
            - {rule: intrusion}
            - {rule: loitering, seconds: 30}
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    config, _ = REGISTRY.load_config(path, env={})
    return config


def test_a_good_camera_section_loads(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    (camera,) = config.video.cameras  # type: ignore[attr-defined]
    assert camera.is_stream and camera.name == "ulsan-refinery/cam-tf-501"
    assert [r.rule for r in camera.zones[0].rules] == ["intrusion", "loitering"]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            ("{rule: loitering, seconds: 30}", "{rule: loitering}"),
            "hub.yaml:14: video.cameras[0].zones[0].rules[1]",
        ),
        (
            ("{rule: intrusion}", "{rule: intrusion, seconds: 3}"),
            "hub.yaml:13: video.cameras[0].zones[0].rules[0]",
        ),
        (("[1.0, 0.5], [1.0, 1.0]", "[1.5, 0.5], [1.0, 1.0]"), "video.cameras[0].zones[0].polygon[1][0]"),
        (("{kind: hog}", "{kind: onnx}"), "hub.yaml:6: video.cameras[0].detector"),
        (("{rule: intrusion}", "{rule: person_down}"), "rules[0]: a person_down rule needs `seconds`"),
        (("{rule: intrusion}", "{rule: intrusion, schedule: {start: '25:00'}}"), "rules[0].schedule.start"),
        (("{rule: intrusion}", "{rule: intrusion, schedule: {days: [monday]}}"), "rules[0].schedule.days[0]"),
        (("{rule: intrusion}", "{rule: intrusion, down_labels: [Fall]}"), "`down_labels` is for person_down"),
        (("{kind: hog}", "{kind: yolo}"), "video.cameras[0].detector.kind"),
        (("      zones:\n", "      zonez:\n"), "hub.yaml:9: video.cameras[0].zonez"),
        (
            ("[[0.8, 0.0], [1.0, 0.0], [1.0, 0.2]]", "[[0.8, 0.0], [1.0, 0.0]]"),
            "video.cameras[0].motion.masks[0]",
        ),
    ],
)
def test_a_bad_camera_names_file_line_and_key(tmp_path: Path, change: tuple[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, GOOD.replace(*change))
    assert where in str(caught.value)


def test_zone_ids_are_unique_per_camera(tmp_path: Path) -> None:
    zones = GOOD.split("      zones:\n")[1]
    with pytest.raises(ConfigError, match="zone and line ids must be unique per camera: tank-bund"):
        load(tmp_path, GOOD + zones)


def test_a_camera_is_configured_once(tmp_path: Path) -> None:
    camera = GOOD.split("  cameras:\n")[1]
    with pytest.raises(ConfigError, match="configured twice: ulsan-refinery/cam-tf-501"):
        load(tmp_path, GOOD + camera)

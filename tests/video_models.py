"""Tiny ONNX models in the YOLOv8 output format, built with the `onnx` helper, and test clips.

`constant_model` answers every frame with the same candidates, so decoding and NMS can be checked
against figures written in the test. `green_box_model` is a real, if simple, detector: it finds
the saturated green pixels of the frame and reports their bounding box (centre from the mean
pixel position, size from the spread: a uniform rectangle of n pixels has variance (n**2 - 1) / 12)
with a score of 1, so a clip with a green rectangle walking into a zone has a known answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

# The image of scikit-image's data set with a face (NASA astronaut Eileen Collins; public domain,
# shipped in the scikit-image wheel).
ASTRONAUT = "astronaut.png"


def _save(graph: onnx.GraphProto, path: Path, names: Sequence[str] | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "names", repr(dict(enumerate(names)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_model(
    path: Path, output: npt.NDArray[np.float32], *, size: int = 64, names: Sequence[str] | None = None
) -> Path:
    """A model whose output is `output` (shape (1, 4 + classes, N)) whatever the frame."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [
        # The input takes part (times zero), so the runtime keeps and checks it.
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["candidates", "nothing"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(output.astype(np.float32), "candidates"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    return _save(helper.make_graph(nodes, "constant", [images], [out], inits), path, names)


def green_box_model(path: Path, *, size: int = 64, names: Sequence[str] = ("person",)) -> Path:
    """A detector of one green object: output (1, 4 + len(names), 1), the first class scored."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + len(names), 1])
    consts = {
        "xs": xs.reshape(1, 1, size, size),
        "ys": ys.reshape(1, 1, size, size),
        "half": np.array(0.5, np.float32),
        "two": np.array(2.0, np.float32),
        "twelve": np.array(12.0, np.float32),
        "tiny": np.array(1e-6, np.float32),
        "starts_r": np.array([0], np.int64),
        "ends_r": np.array([1], np.int64),
        "starts_g": np.array([1], np.int64),
        "ends_g": np.array([2], np.int64),
        "axis": np.array([1], np.int64),
        "shape": np.array([1, 1, 1], np.int64),
        "others": np.zeros((1, len(names) - 1, 1), np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Slice", ["images", "starts_r", "ends_r", "axis"], ["r"]),
        n("Slice", ["images", "starts_g", "ends_g", "axis"], ["g"]),
        n("Sub", ["g", "r"], ["g_minus_r"]),
        n("Sub", ["g_minus_r", "half"], ["over"]),
        n("Relu", ["over"], ["relu"]),
        n("Mul", ["relu", "two"], ["mask"]),  # 1 on pure green, 0 where green does not lead by half
        n("ReduceSum", ["mask"], ["mass0"], keepdims=0),
        n("Add", ["mass0", "tiny"], ["mass"]),
        n("Mul", ["mask", "xs"], ["mx"]),
        n("Mul", ["mask", "ys"], ["my"]),
        n("Mul", ["mx", "xs"], ["mxx"]),
        n("Mul", ["my", "ys"], ["myy"]),
        n("ReduceSum", ["mx"], ["sx"], keepdims=0),
        n("ReduceSum", ["my"], ["sy"], keepdims=0),
        n("ReduceSum", ["mxx"], ["sxx"], keepdims=0),
        n("ReduceSum", ["myy"], ["syy"], keepdims=0),
        n("Div", ["sx", "mass"], ["cx"]),
        n("Div", ["sy", "mass"], ["cy"]),
        n("Div", ["sxx", "mass"], ["ex2"]),
        n("Div", ["syy", "mass"], ["ey2"]),
        n("Mul", ["cx", "cx"], ["cx2"]),
        n("Mul", ["cy", "cy"], ["cy2"]),
        n("Sub", ["ex2", "cx2"], ["varx"]),
        n("Sub", ["ey2", "cy2"], ["vary"]),
        n("Mul", ["varx", "twelve"], ["w2"]),
        n("Mul", ["vary", "twelve"], ["h2"]),
        n("Relu", ["w2"], ["w2p"]),
        n("Relu", ["h2"], ["h2p"]),
        n("Sqrt", ["w2p"], ["w"]),
        n("Sqrt", ["h2p"], ["h"]),
        n("ReduceMax", ["mask"], ["score"], keepdims=0),
        *(n("Reshape", [v, "shape"], [f"{v}_r"]) for v in ("cx", "cy", "w", "h", "score")),
        n(
            "Concat",
            ["cx_r", "cy_r", "w_r", "h_r", "score_r", *(["others"] if len(names) > 1 else [])],
            ["output0"],
            axis=1,
        ),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if k != "others" or len(names) > 1]
    return _save(helper.make_graph(nodes, "green_box", [images], [out], inits), path, names)


def astronaut() -> npt.NDArray[np.uint8]:
    """A photograph with one frontal face (BGR, 512 x 512)."""
    import skimage

    image = cv2.imread(str(Path(skimage.__file__).parent / "data" / ASTRONAUT))
    assert image is not None
    return image


def intrusion_frames(
    *, width: int = 320, height: int = 240, frames: int = 80
) -> Iterator[npt.NDArray[np.uint8]]:
    """A green 'person' walking from the top left into the bottom half, beside a face photograph
    in the top right corner."""
    face = cv2.resize(astronaut(), (160, 160))
    for i in range(frames):
        frame = np.full((height, width, 3), 70, np.uint8)
        frame[0:160, width - 160 : width] = face
        # 20 x 40 pixels, walking down and right: its feet cross y = 0.5 of the frame at frame 35,
        # slowly enough for a loaded worker that skips frames to keep its track.
        x = 20 + i
        y = 10 + i * 2
        frame[y : y + 40, x : x + 20] = (0, 255, 0)
        yield frame


def intrusion_clip(
    path: Path, *, width: int = 320, height: int = 240, frames: int = 80, fps: float = 20.0
) -> Path:
    """`intrusion_frames` as a clip (MJPEG in AVI)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in intrusion_frames(width=width, height=height, frames=frames):
        writer.write(frame)
    writer.release()
    return path

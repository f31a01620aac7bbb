"""A camera's frames through OpenCV: RTSP, HTTP(S) MJPEG, or a video file played in a loop.

Blocking calls: used only from the camera's worker thread. A stream is opened and read with
FFmpeg's timeouts, so a stream that stalls fails the read instead of hanging the worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from services.common.errors import SafetyhubError

Frame = npt.NDArray[np.uint8]


class SourceError(SafetyhubError):
    """The camera cannot be opened, or stopped delivering frames."""


class FrameSource:
    def __init__(self, source: str, *, is_stream: bool, timeout_s: float) -> None:
        self._source = source
        self._is_stream = is_stream
        self._timeout_ms = int(timeout_s * 1000)
        self._capture: cv2.VideoCapture | None = None
        self.fps = 0.0

    def open(self) -> None:
        if self._is_stream:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self._timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self._timeout_ms,
            ]
            capture = cv2.VideoCapture(self._source, cv2.CAP_FFMPEG, params)
        else:
            if not Path(self._source).is_file():
                raise SourceError(f"no video file {self._source}")
            capture = cv2.VideoCapture(self._source)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {_redacted(self._source)}")
        self._capture = capture
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 240.0 else 25.0

    def read(self) -> Frame | None:
        """The next frame; None for a frame that could not be decoded. A file starts again at
        its end; a stream that ends or stalls raises SourceError."""
        capture = self._capture
        if capture is None:
            raise SourceError("the source is not open")
        ok, frame = capture.read()
        if not ok and not self._is_stream:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = capture.read()
        if not ok:
            raise SourceError(f"{_redacted(self._source)} stopped delivering frames")
        if frame is None or frame.ndim != 3 or frame.size == 0:
            return None
        return cast(Frame, frame)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _redacted(source: str) -> str:
    """The source without a password (rtsp://user:secret@host/... is common), for logs and health."""
    scheme, sep, rest = source.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return source
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"

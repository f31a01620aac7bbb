"""A camera's frames through OpenCV: RTSP, HTTP(S) MJPEG, or a video file played in a loop.

Blocking calls: used only from the camera's worker thread. A stream is opened and read with
FFmpeg's timeouts, so a stream that stalls fails the read instead of hanging the worker.

Reading is split in two, `grab()` (the next frame arrives) and `retrieve()` (the frame grabbed,
as a picture), because a camera delivers more frames than are analysed (25 a second against 2)
and decoding is most of what a frame costs. An MJPEG source (an HTTP(S) MJPEG stream, an MJPEG
file) is read as FFmpeg's packets, each a whole JPEG: a grab copies bytes and `retrieve()`
decodes only the frames asked for, at the smallest JPEG scale (1/2, 1/4, 1/8) still at least
the analysis width, which costs a fraction of a full decode and of the resize after it. A
source of any other codec (H.264 or H.265 over RTSP) must decode every frame in `grab()`, as
each frame is coded against the ones before it: there a camera's substream at a lower rate and
resolution is what saves the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np
import numpy.typing as npt

from services.common.errors import SafetyhubError

Frame = npt.NDArray[np.uint8]

# FFmpeg's codec tags of Motion JPEG (AVI and HTTP multipart, QuickTime, QuickTime MJPEG-A):
# their packets are JPEG pictures that cv2.imdecode reads.
_MJPEG_TAGS = frozenset({"MJPG", "jpeg", "mjpa"})
# JPEG's DCT scaling: decoding at 1/n costs a fraction of a full decode.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


class SourceError(SafetyhubError):
    """The camera cannot be opened, or stopped delivering frames."""


class Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class FrameSource:
    """One camera's frames. `width` is the width frames are analysed at (0: as delivered): an
    MJPEG frame is decoded no larger than needed for it. `packets=False` decodes every frame
    whatever the codec (the way before packets; kept to measure against). `decoded` counts the
    pictures decoded."""

    def __init__(
        self,
        source: str,
        *,
        is_stream: bool,
        timeout_s: float,
        width: int = 0,
        packets: bool = True,
        decoded: Count | None = None,
    ) -> None:
        self._source = source
        self._is_stream = is_stream
        self._timeout_ms = int(timeout_s * 1000)
        self._width = width
        self._packets = packets
        self._decoded = decoded
        self._capture: cv2.VideoCapture | None = None
        self._flag = cv2.IMREAD_COLOR
        self.fps = 0.0
        # Whether frames are read as JPEG packets and decoded only when retrieved.
        self.raw = False

    def open(self) -> None:
        capture = self._opened()
        self._capture = capture
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 240.0 else 25.0
        if self._packets and _tag(capture) in _MJPEG_TAGS and capture.set(cv2.CAP_PROP_FORMAT, -1):
            self._raw_mode(capture)

    def _opened(self) -> cv2.VideoCapture:
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
        return capture

    def _raw_mode(self, capture: cv2.VideoCapture) -> None:
        """Packets it is, if the first one is a JPEG that decodes; its size sets the scale of
        the decodes after it. Otherwise the source is opened again to be decoded frame by frame."""
        self.raw = True
        self._grab(capture)
        first = self._packet(capture)
        picture = None if first is None else cv2.imdecode(first, cv2.IMREAD_COLOR)
        if picture is not None:
            self._scale_for(int(picture.shape[1]))
            if not self._is_stream:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return
        capture.release()
        self.raw = False
        self._capture = self._opened()

    def _scale_for(self, width: int) -> None:
        """Decode pictures `width` wide at the smallest scale still at least the analysis width."""
        if self._width > 0:
            self._flag = next((f for n, f in _REDUCED if width // n >= self._width), cv2.IMREAD_COLOR)

    def grab(self) -> None:
        """Move on to the next frame (decoding it only when the source is not MJPEG). A file
        starts again at its end; a stream that ends or stalls raises SourceError."""
        capture = self._capture
        if capture is None:
            raise SourceError("the source is not open")
        self._grab(capture)
        if not self.raw and self._decoded is not None:
            self._decoded.inc()

    def _grab(self, capture: cv2.VideoCapture) -> None:
        ok = capture.grab()
        if not ok and not self._is_stream:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok = capture.grab()
        if not ok:
            raise SourceError(f"{_redacted(self._source)} stopped delivering frames")

    def retrieve(self) -> Frame | None:
        """The frame grabbed last, as a BGR picture; None for one that cannot be decoded."""
        capture = self._capture
        if capture is None:
            raise SourceError("the source is not open")
        if self.raw:
            packet = self._packet(capture)
            if packet is None:
                return None
            if self._decoded is not None:
                self._decoded.inc()
            try:
                frame = cv2.imdecode(packet, self._flag)
                if frame is not None and self._flag != cv2.IMREAD_COLOR and frame.shape[1] < self._width:
                    # The camera now sends smaller pictures: whole, and the scale set for the next.
                    frame = cv2.imdecode(packet, cv2.IMREAD_COLOR)
                    if frame is not None:
                        self._scale_for(int(frame.shape[1]))
            except cv2.error:  # a broken JPEG is a corrupt frame, not a camera to reconnect
                return None
        else:
            ok, frame = capture.retrieve()
            if not ok:
                return None
        if frame is None or frame.ndim != 3 or frame.size == 0:
            return None
        return cast(Frame, frame)

    def _packet(self, capture: cv2.VideoCapture) -> npt.NDArray[np.uint8] | None:
        ok, packet = capture.retrieve()
        if not ok or packet is None or packet.size < 4:
            return None
        data = cast(npt.NDArray[np.uint8], packet.ravel())
        # A JPEG starts with its SOI marker; anything else is not one.
        return data if data[0] == 0xFF and data[1] == 0xD8 else None

    def read(self) -> Frame | None:
        """The next frame, decoded: `grab()` then `retrieve()`."""
        self.grab()
        return self.retrieve()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _tag(capture: cv2.VideoCapture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC) or 0)
    return code.to_bytes(4, "little").decode("latin-1").rstrip("\x00 ")


def _redacted(source: str) -> str:
    """The source without a password (rtsp://user:secret@host/... is common), for logs and health."""
    scheme, sep, rest = source.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return source
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"

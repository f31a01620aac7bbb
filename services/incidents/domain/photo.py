"""Is it a photo? A responder's attachment is kept only if it is a JPEG or PNG by its content.

The declared Content-Type says nothing reliable (a phone may send application/octet-stream, a
script anything): the first bytes must be the format's signature and Pillow must read a sane
header (dimensions, mode) from it, and a PNG's chunks must pass their checksums. Pure: bytes in,
facts out; nothing is written anywhere.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from services.incidents.domain.lifecycle import IncidentError

MAX_PHOTO_BYTES = 10 * 1024 * 1024
# More pixels than any phone camera takes: a tiny file claiming more is a decompression bomb.
MAX_PIXELS = 200_000_000

JPEG, PNG = "image/jpeg", "image/png"
_SIGNATURES = {JPEG: b"\xff\xd8\xff", PNG: b"\x89PNG\r\n\x1a\n"}
_FORMATS = {JPEG: "JPEG", PNG: "PNG"}
PHOTO_TYPES = tuple(_SIGNATURES)


class NotAPhoto(IncidentError):
    """The bytes are not a JPEG or PNG this service keeps."""


@dataclass(frozen=True, slots=True)
class Photo:
    content_type: str  # image/jpeg or image/png, as the content says
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """The type the first bytes announce, or None."""
    return next((kind for kind, magic in _SIGNATURES.items() if data.startswith(magic)), None)


def inspect_photo(data: bytes) -> Photo:
    """What `data` is, if a JPEG or PNG whose header decodes; raises NotAPhoto otherwise."""
    kind = sniff(data)
    if kind is None:
        raise NotAPhoto("the content is neither a JPEG nor a PNG (its first bytes are no image signature)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_FORMATS[kind]]) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise NotAPhoto(f"{width}x{height} pixels is more than any photo takes")
                # Reads the whole structure without decoding pixels: a PNG's chunk checksums, a
                # JPEG's segments up to its scan.
                image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise NotAPhoto(f"the content starts as a {_FORMATS[kind]} but does not decode: {err}") from err
    except Image.DecompressionBombWarning as err:
        raise NotAPhoto(f"more pixels than any photo takes: {err}") from err
    if width < 1 or height < 1:
        raise NotAPhoto("an image without pixels")
    return Photo(kind, width, height)

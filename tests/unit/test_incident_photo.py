"""What an incident keeps as a photo: JPEG or PNG by content, whatever the sender called it."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from services.incidents.domain.photo import JPEG, PNG, NotAPhoto, inspect_photo, sniff


def picture(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.new("RGB", size, (200, 80, 20))
    image.paste((20, 20, 200), (8, 8, 24, 24))  # something in it, as in a real photo
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR claiming the size and a few bytes of compressed data: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.mark.parametrize(("fmt", "kind"), [("JPEG", JPEG), ("PNG", PNG)])
def test_a_real_jpeg_or_png_is_a_photo_with_its_size(fmt: str, kind: str) -> None:
    photo = inspect_photo(picture(fmt, (640, 480)))

    assert (photo.content_type, photo.width, photo.height) == (kind, 640, 480)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_image_formats_are_not_kept(fmt: str) -> None:
    with pytest.raises(NotAPhoto, match="neither a JPEG nor a PNG"):
        inspect_photo(picture(fmt))


def test_text_or_a_script_is_not_a_photo() -> None:
    for data in (b"<script>alert(1)</script>", b"%PDF-1.7\n", b"\x00" * 100):
        with pytest.raises(NotAPhoto):
            inspect_photo(data)


def test_the_signature_alone_does_not_make_a_photo() -> None:
    # A JPEG's first bytes followed by anything: the header does not decode.
    with pytest.raises(NotAPhoto, match="does not decode"):
        inspect_photo(b"\xff\xd8\xff\xe0" + b"not a jpeg at all" * 10)
    with pytest.raises(NotAPhoto, match="does not decode"):
        inspect_photo(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_a_png_with_a_damaged_chunk_is_refused() -> None:
    data = bytearray(picture("PNG"))
    data[40] ^= 0xFF  # inside the image data: its CRC no longer matches
    with pytest.raises(NotAPhoto):
        inspect_photo(bytes(data))


def test_a_tiny_file_claiming_billions_of_pixels_is_refused() -> None:
    with pytest.raises(NotAPhoto, match="pixels"):
        inspect_photo(png_header_only(100_000, 100_000))


def test_sniff_names_the_type_by_the_first_bytes() -> None:
    assert sniff(picture("JPEG")) == JPEG
    assert sniff(picture("PNG")) == PNG
    assert sniff(picture("GIF")) is None

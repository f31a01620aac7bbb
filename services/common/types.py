"""The shared vocabulary: the ids and names every service reads the same way.

Site, tenant and device ids travel in bus subjects, URLs, rows and site files; a kind names what
a device measures. Each is defined once here, so a site file, an observation and a query accept
exactly the same ids (an id a site file declares is one a gateway can post, and the reverse).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

# Site and tenant ids: lowercase, no dots or spaces (a dot would split a bus subject).
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*\Z"
# Device ids often come from a plant's tag list, so case and underscores are allowed.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z"
# Dotted lowercase words: `gas.h2s`, `flame.ir`, `temperature`.
KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z"
# An id a client may choose (an observation's id, a correlation id); derived ids (ULIDs) fit too.
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:@/-]+\Z"

# At most 63 characters: one DNS label, and short enough for subjects and key scopes.
Slug = Annotated[str, Meta(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
DeviceId = Annotated[str, Meta(min_length=1, max_length=63, pattern=DEVICE_ID_PATTERN)]
Kind = Annotated[str, Meta(max_length=63, pattern=KIND_PATTERN)]
ClientId = Annotated[str, Meta(min_length=1, max_length=128, pattern=CLIENT_ID_PATTERN)]

__all__ = [
    "CLIENT_ID_PATTERN",
    "DEVICE_ID_PATTERN",
    "KIND_PATTERN",
    "SLUG_PATTERN",
    "ClientId",
    "DeviceId",
    "Kind",
    "Slug",
]

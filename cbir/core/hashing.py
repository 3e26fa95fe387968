"""The content hash used throughout the catalog (BLAKE2b, 20 bytes, hex)."""

from __future__ import annotations

import hashlib
from typing import Sequence


def content_hash(data: bytes) -> str:
    """The hash of one file's bytes."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def members_hash(contents: Sequence[bytes]) -> str:
    """The hash of a source's members in order: a single member's own hash, else the hash of the
    members' hashes (so moving bytes from one member to the next changes it)."""
    if len(contents) == 1:
        return content_hash(contents[0])
    return content_hash("".join(content_hash(data) for data in contents).encode())

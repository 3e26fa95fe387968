"""Serving an item's file only while it is still the file that was indexed.

Between indexing and a request, anyone who can write to the image folder
may replace an indexed picture, for example with a symbolic link to
``/etc/passwd``. The server therefore opens the file once, checks that it is
a regular file whose content hash is the one the catalog recorded, and
serves (or renders a thumbnail from) that same open file, so a swap after
the check cannot change what is sent. Verified (device, inode, size, mtime)
stamps are remembered, so an unchanged file is hashed once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from cbir.server.errors import ApiError

CHUNK = 1 << 20


@dataclass(frozen=True)
class VerifiedFile:
    """An open file proven to be the indexed one; ``stamp`` identifies this version of it."""

    stream: BinaryIO
    size: int
    stamp: tuple[int, int, int, int]


class IndexedFiles:
    """Opens items' files after checking them against the catalog's content hashes."""

    def __init__(self, remembered: int = 4096):
        self._verified: dict[tuple, str] = {}
        self._remembered = remembered
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def open(self, item_id: int, uri: str, expected_hash: str | None) -> Iterator[VerifiedFile]:
        """The verified open file of an item; 404 when it is gone, 409 when it is no longer what was indexed."""
        try:
            descriptor = os.open(uri, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            raise ApiError(404, f"the file of item {item_id} is no longer at {uri}; re-index the collection") from None
        with os.fdopen(descriptor, "rb") as stream:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise ApiError(409, f"{uri} is no longer a regular file: item {item_id} is not served; re-index the collection")
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            if expected_hash is None:
                if os.path.realpath(uri) != os.path.abspath(uri):
                    raise ApiError(409, f"{uri} now leads through a symbolic link and item {item_id} has no content hash to check it by")
            elif self._verified.get(key) != expected_hash:
                if _hash_of(stream) != expected_hash:
                    raise ApiError(
                        409, f"{uri} has changed since it was indexed: item {item_id} is not served; re-index the collection"
                    )
                self._remember(key, expected_hash)
            stream.seek(0)
            yield VerifiedFile(stream, info.st_size, key)

    def _remember(self, key: tuple, digest: str) -> None:
        with self._guard:
            if len(self._verified) >= self._remembered:
                self._verified.pop(next(iter(self._verified)))
            self._verified[key] = digest


def _hash_of(stream: BinaryIO) -> str:
    """The catalog's content hash (BLAKE2b, 20 bytes) of an open file."""
    digest = hashlib.blake2b(digest_size=20)
    for chunk in iter(functools.partial(stream.read, CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()

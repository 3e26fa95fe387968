"""Using a collection without writing to it: on a read-only mount, a CD, or a folder one may not change.

SQLite normally writes beside the catalog even to read it (its ``-shm`` and
``-wal`` files); a catalog in a folder that cannot be written is opened
``immutable`` instead, and one opened read-only in a writable folder with
``mode=ro``. Changing a read-only collection fails at once with a message.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from cbir.collection.errors import CollectionError


def is_writable(folder: Path) -> bool:
    """Whether files in ``folder`` can be created and replaced (false on a read-only mount, even for root)."""
    return os.access(folder, os.W_OK)


def connect_read_only(database: Path) -> sqlite3.Connection:
    """A connection that never writes to ``database`` or beside it."""
    wal = database.with_name(database.name + "-wal")
    pending = wal.is_file() and wal.stat().st_size > 0
    mode = "mode=ro" if is_writable(database.parent) or pending else "immutable=1"
    try:
        connection = sqlite3.connect(
            f"file:{quote(str(database.resolve()))}?{mode}", uri=True, timeout=60, check_same_thread=False,
            isolation_level=None,
        )
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as error:
        raise CollectionError(
            f"{database} cannot be opened read-only ({error}); its last changes are still in {wal.name}: "
            "open the collection once where it can be written (for example 'cbir info') to fold them in"
        ) from None
    return connection


class ReadOnlyLock:
    """Stands in for the write lock of a read-only collection: taking it says why changes are impossible."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _refuse(self) -> None:
        raise CollectionError(
            f"{self.folder} is read-only here: it can be searched and served, but adding, removing or "
            "whitening needs write access to the folder"
        )

    def acquire(self, timeout: float | None = None, **_) -> None:
        self._refuse()

    def release(self, **_) -> None:
        """Nothing to release: the lock is never held."""

    def __enter__(self) -> "ReadOnlyLock":
        self._refuse()
        return self

    def __exit__(self, *exc) -> None:
        """Never reached: entering refuses."""

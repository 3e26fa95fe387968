"""What ties the files of a collection together, checked when it is created, opened and written.

``catalog.sqlite`` is the source of truth. Beside the items it keeps a record
of its own: an id, and the manifest its vectors were made under (each space's
encoder and dimension). From that record:

- a manifest that disagrees (edited pooling or size, or another collection's)
  is refused instead of silently mixing incomparable vectors, and a lost or
  damaged manifest can be restored (``cbir doctor --repair``);
- a FAISS index file carries the catalog's id and its own checksum, so an
  index copied from elsewhere, or damaged, is rebuilt from the catalog;
- a missing, emptied or foreign catalog is an error, never an empty
  collection whose derived files would then be rewritten empty.

Creating a collection happens under its write lock, so of two processes
creating the same folder one wins and the other finds a collection.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock

from cbir.collection.errors import CollectionError
from cbir.collection.manifest import Manifest, SpaceInfo
from cbir.collection.readonly import connect_read_only
from cbir.pipelines.pipeline import PRIVATE_RECORD_KEYS

MANIFEST_FILE = "manifest.json"
CATALOG_FILE = "catalog.sqlite"
LOCK_FILE = ".write.lock"
UPLOADS_FOLDER = "uploads"
RECORD_TABLE = "CREATE TABLE IF NOT EXISTS collection_record (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
STALE_TEMPORARY_SECONDS = 3600.0


class CollectionExistsError(CollectionError):
    """Another process created the collection first."""


def repair_hint(path: Path) -> str:
    return f"'cbir doctor --collection {path} --repair'"


# the catalog file ------------------------------------------------------------
def check_catalog_file(path: Path) -> None:
    """Refuse to open a collection whose catalog is missing, empty, damaged or has no collection in it."""
    catalog = path / CATALOG_FILE
    lost = (
        "it holds every item and vector, so nothing can be rebuilt without it: restore it from a backup, "
        "or move the folder away and index the images again"
    )
    if not catalog.is_file():
        raise CollectionError(f"{catalog} is missing; {lost}")
    if catalog.stat().st_size == 0:
        raise CollectionError(f"{catalog} is empty; {lost}")
    try:
        connection = connect_read_only(catalog)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise CollectionError(f"{catalog} is damaged ({error}); {lost}") from None
    if "items" not in tables:
        raise CollectionError(f"{catalog} holds no collection (no items table); {lost}")


def refuse_catalog_without_manifest(path: Path) -> None:
    """A catalog whose manifest is gone must not be adopted by a new encoder."""
    if (path / CATALOG_FILE).exists() and not (path / MANIFEST_FILE).exists():
        raise CollectionError(
            f"{path} has a catalog but no {MANIFEST_FILE}; its vectors were made by a particular encoder, "
            f"so a new one is not adopted: {repair_hint(path)} restores the manifest from the catalog"
        )


@contextlib.contextmanager
def creating(path: Path) -> Iterator[None]:
    """Hold the write lock while a new collection's files are written; refuses a folder that has one."""
    path.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path / LOCK_FILE)):
        if (path / MANIFEST_FILE).exists():
            raise CollectionExistsError(f"{path} already holds a collection: open it instead")
        refuse_catalog_without_manifest(path)
        yield


# the record of the manifest in the catalog ----------------------------------
def manifest_data(manifest: Manifest) -> dict:
    """The manifest as stored: everything needed to write it again."""
    return {
        "format": manifest.format,
        "default_space": manifest.default_space,
        "created": manifest.created,
        "versions": manifest.versions,
        "spaces": {name: dict(vars(space)) for name, space in manifest.spaces.items()},
    }


def _read(connection: sqlite3.Connection, key: str) -> str | None:
    try:
        row = connection.execute("SELECT value FROM collection_record WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def collection_id(connection: sqlite3.Connection) -> str | None:
    return _read(connection, "id")


def stored_manifest(connection: sqlite3.Connection) -> Manifest | None:
    """The manifest recorded in the catalog, or None for a catalog that predates the record."""
    value = _read(connection, "manifest")
    if value is None:
        return None
    data = json.loads(value)
    spaces = {name: SpaceInfo(**space) for name, space in data["spaces"].items()}
    return Manifest(spaces, data["default_space"], data["created"], data.get("versions", {}), data["format"])


def record_manifest(connection: sqlite3.Connection, manifest: Manifest) -> None:
    """Store the manifest (and, the first time, a new collection id) in the catalog."""
    connection.execute(RECORD_TABLE)
    connection.execute("INSERT OR IGNORE INTO collection_record (key, value) VALUES ('id', ?)", (uuid.uuid4().hex,))
    connection.execute(
        "INSERT OR REPLACE INTO collection_record (key, value) VALUES ('manifest', ?)",
        (json.dumps(manifest_data(manifest), sort_keys=True),),
    )


def vector_identity(manifest: Manifest) -> dict[str, dict]:
    """What decides whether two vectors are comparable: each space's encoder and dimension."""
    return {name: {"encoder": space.encoder, "dim": space.dim} for name, space in manifest.spaces.items()}


def describe_differences(stored: Manifest, current: Manifest) -> list[str]:
    """How ``current`` departs from ``stored`` in encoders and dimensions (empty when it does not)."""
    differences = []
    before, after = vector_identity(stored), vector_identity(current)
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            differences.append(f"space {name!r} is missing")
        elif name not in before:
            differences.append(f"space {name!r} is unknown to the catalog")
        else:
            old, new = before[name]["encoder"], after[name]["encoder"]
            for key in sorted(old.keys() | new.keys()):
                if old.get(key) != new.get(key) and key in PRIVATE_RECORD_KEYS:
                    differences.append(f"{name}.{key}: the manifest's differs from the one the vectors were made with")
                elif old.get(key) != new.get(key):
                    differences.append(f"{name}.{key}: vectors made with {old.get(key)!r}, manifest says {new.get(key)!r}")
            if before[name]["dim"] != after[name]["dim"]:
                differences.append(f"{name}.dim: vectors are {before[name]['dim']}-d, manifest says {after[name]['dim']}")
    return differences


def check_manifest(path: Path, manifest: Manifest, connection: sqlite3.Connection, writable: bool) -> None:
    """Refuse a manifest that does not describe the catalog's vectors; record it for an older catalog."""
    stored = stored_manifest(connection)
    if stored is None:
        if writable:
            record_manifest(connection, manifest)
        return
    differences = describe_differences(stored, manifest)
    if differences:
        raise CollectionError(
            f"{path / MANIFEST_FILE} does not describe the vectors in the catalog ({'; '.join(differences)}): "
            f"it was edited or replaced; {repair_hint(path)} restores it from the catalog"
        )


# FAISS index files ------------------------------------------------------------
def file_checksum(path: Path) -> str:
    """CRC-32 and size of a file, read in chunks."""
    crc, size = 0, 0
    with open(path, "rb") as stream:
        while chunk := stream.read(16 << 20):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return f"{crc:08x}:{size}"


def index_stamp(index_path: Path, connection: sqlite3.Connection) -> dict:
    """What an index file's metadata records to prove it belongs to this catalog and is intact."""
    return {"collection": collection_id(connection), "checksum": file_checksum(index_path)}


def index_file_is_ours(meta: dict, index_path: Path, connection: sqlite3.Connection) -> bool:
    """Whether the index file was written for this catalog and is unchanged since."""
    return meta.get("collection") == collection_id(connection) and meta.get("checksum") == file_checksum(index_path)


def read_index_meta(meta_path: Path) -> dict | None:
    """The metadata beside an index file, or None when it is missing or unreadable (the index is then rebuilt)."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


# leftovers --------------------------------------------------------------------
def stale_temporaries(path: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Temporary files of interrupted atomic writes (``.NAME.XXXX.tmp``) older than ``older_than`` seconds."""
    now = time.time()
    found = []
    for file in path.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if file.is_file() and now - file.stat().st_mtime > older_than:
                found.append(file)
    return sorted(found)


def remove_files(files: Iterable[Path]) -> int:
    removed = 0
    for file in files:
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
            removed += 1
    return removed


def vanished_skipped(skipped: dict[tuple[str, str], tuple], roots: list[Path]) -> list[tuple[str, str]]:
    """(uri, pipeline) of skipped entries under ``roots`` whose files no longer exist."""
    return [
        (uri, pipeline)
        for uri, pipeline in skipped
        if any(Path(uri) == root or root in Path(uri).parents for root in roots) and not Path(uri).exists()
    ]


def orphaned_uploads(folder: Path, known_uris: set[str], older_than: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Files in the server's upload folder that no catalog source refers to, older than ``older_than`` seconds.

    A server killed between storing an upload and indexing it leaves one behind.
    """
    if not folder.is_dir():
        return []
    now = time.time()
    return sorted(
        file
        for file in folder.glob("*/*")
        if file.is_file() and str(file.resolve()) not in known_uris and now - file.stat().st_mtime > older_than
    )


def remove_uploads(files: list[Path]) -> int:
    """Delete uploads and the per-upload folders they leave empty."""
    removed = remove_files(files)
    for file in files:
        with contextlib.suppress(OSError):
            file.parent.rmdir()
    return removed

"""The SQLite catalog: sources (what a pipeline has read), their items (what was indexed), and why
a source was skipped.

A source is what a user points at: an image file, a video, a DICOM series.
It has a URI, its member files with their size and modification time (the
stamp a change is detected by), the content hash its items were made from,
and the reason its last reading gave nothing (NULL when it is indexed).
Items keep their raw descriptor, so the vector index is a derived file that
can always be rebuilt from the catalog. Every write happens in one
transaction, so an interrupted run leaves either all of a batch or none.

The schema is versioned (``PRAGMA user_version``); a catalog of an older
version is migrated in one transaction when it is opened.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cbir.collection.errors import CollectionError
from cbir.collection.readonly import connect_read_only
from cbir.collection.vector_store import ItemFilter
from cbir.core.items import Item
from cbir.pipelines.sources import Stamp

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    members TEXT NOT NULL,
    content_hash TEXT,
    skip_reason TEXT,
    indexed_at REAL NOT NULL,
    UNIQUE (uri, pipeline)
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER REFERENCES sources(id) ON DELETE CASCADE,
    space TEXT NOT NULL,
    kind TEXT NOT NULL,
    uri TEXT NOT NULL,
    content_hash TEXT,
    box TEXT,
    t_start REAL,
    t_end REAL,
    labels TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_space ON items (space);
CREATE INDEX IF NOT EXISTS items_source ON items (source_id);
"""


class CatalogVersionError(CollectionError):
    """A catalog written by a newer version of cbir."""


@dataclass(frozen=True)
class SourceState:
    """What the catalog knows of a source it has read before.

    ``content_hash`` is the hash of the content its items were made from (None
    when it never gave items); ``skip_reason`` why its last reading, at
    ``members``, gave nothing (None when that reading is indexed).
    """

    id: int
    members: Stamp
    content_hash: str | None
    skip_reason: str | None

    @property
    def indexed(self) -> bool:
        return self.content_hash is not None


class Catalog:
    """Thin typed layer over the SQLite file."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        if read_only:
            self.connection = connect_read_only(self.path)
            if self.connection.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                raise CatalogVersionError(
                    f"{self.path} has an older catalog schema: open the collection once with write access to upgrade it"
                )
            return
        self.connection = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        version = self.connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogVersionError(
                f"{self.path} has catalog schema {version}; this cbir reads up to {SCHEMA_VERSION}: upgrade cbir"
            )
        if version < SCHEMA_VERSION and _has_table(self.connection, "sources"):
            migrate_v1(self.connection)
        elif version < SCHEMA_VERSION:
            self.connection.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        self.connection.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.connection.close()

    def transaction(self) -> "_Transaction":
        """``with catalog.transaction():`` groups writes atomically."""
        return _Transaction(self.connection)

    # sources -----------------------------------------------------------------
    def sources(self, pipeline: str) -> dict[str, SourceState]:
        """Every source ``pipeline`` has read, indexed or skipped, by URI."""
        rows = self.connection.execute(
            "SELECT uri, id, members, content_hash, skip_reason FROM sources WHERE pipeline = ?", (pipeline,)
        )
        return {uri: SourceState(id_, _stamp(members), digest, reason) for uri, id_, members, digest, reason in rows}

    def pipelines(self, prefix: str = "") -> dict[str, int]:
        """Number of indexed sources of each pipeline whose name starts with ``prefix``."""
        rows = self.connection.execute(
            "SELECT pipeline, COUNT(*) FROM sources WHERE substr(pipeline, 1, ?) = ? AND content_hash IS NOT NULL "
            "GROUP BY pipeline ORDER BY pipeline",
            (len(prefix), prefix),
        )
        return dict(rows.fetchall())

    def skipped(self, pipeline: str | None = None) -> dict[tuple[str, str], str]:
        """Why each source whose last reading gave nothing was skipped, by (URI, pipeline)."""
        query = "SELECT uri, pipeline, skip_reason FROM sources WHERE skip_reason IS NOT NULL"
        rows = self.connection.execute(query + (" AND pipeline = ?" if pipeline else ""), (pipeline,) if pipeline else ())
        return {(uri, pipe): reason for uri, pipe, reason in rows}

    def record_source(self, uri: str, pipeline: str, members: Stamp, content_hash: str) -> int:
        """Insert or refresh an indexed source and return its id; its old items are removed by the caller."""
        row = self.connection.execute(
            "INSERT INTO sources (uri, pipeline, members, content_hash, skip_reason, indexed_at) VALUES (?, ?, ?, ?, NULL, ?) "
            "ON CONFLICT (uri, pipeline) DO UPDATE SET members = excluded.members, content_hash = excluded.content_hash, "
            "skip_reason = NULL, indexed_at = excluded.indexed_at RETURNING id",
            (uri, pipeline, json.dumps(members), content_hash, time.time()),
        ).fetchone()
        return row[0]

    def record_skipped(self, uri: str, pipeline: str, members: Stamp, reason: str) -> None:
        """Remember why a source gave nothing at ``members``; items of an earlier reading stay."""
        self.connection.execute(
            "INSERT INTO sources (uri, pipeline, members, content_hash, skip_reason, indexed_at) VALUES (?, ?, ?, NULL, ?, ?) "
            "ON CONFLICT (uri, pipeline) DO UPDATE SET members = excluded.members, skip_reason = excluded.skip_reason",
            (uri, pipeline, json.dumps(members), reason, time.time()),
        )

    def forget_skipped(self, uri: str, pipeline: str) -> None:
        """Drop a skipped source that never gave items (its file is gone)."""
        self.connection.execute(
            "DELETE FROM sources WHERE uri = ? AND pipeline = ? AND skip_reason IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM items WHERE items.source_id = sources.id)",
            (uri, pipeline),
        )

    def remove_sources(self, source_ids: Iterable[int]) -> list[int]:
        """Delete sources and their items; returns the removed item ids."""
        removed: list[int] = []
        for source_id in source_ids:
            removed += self.item_ids_of_source(source_id)
            self.connection.execute("DELETE FROM items WHERE source_id = ?", (source_id,))
            self.connection.execute("DELETE FROM sources WHERE id = ?", (source_id,))
        return removed

    # items -------------------------------------------------------------------
    def item_ids_of_source(self, source_id: int) -> list[int]:
        return [row[0] for row in self.connection.execute("SELECT id FROM items WHERE source_id = ?", (source_id,))]

    def insert_item(self, item: Item, space: str, source_id: int | None) -> int:
        vector = np.ascontiguousarray(item.vector, dtype=np.float32)
        row = self.connection.execute(
            "INSERT INTO items (source_id, space, kind, uri, content_hash, box, t_start, t_end, labels, metadata, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                source_id,
                space,
                item.kind,
                item.uri,
                item.content_hash,
                json.dumps(list(item.box)) if item.box is not None else None,
                item.t_start,
                item.t_end,
                json.dumps(item.labels),
                json.dumps(item.metadata),
                vector.tobytes(),
            ),
        ).fetchone()
        return row[0]

    def delete_items(self, item_ids: Iterable[int]) -> None:
        self.connection.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in item_ids])

    def remove_items(self, item_ids: Iterable[int]) -> dict[str, list[int]]:
        """Delete items, and the sources they leave without items; returns the deleted ids by space."""
        ids = sorted({int(i) for i in item_ids})
        removed: dict[str, list[int]] = {}
        sources: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for item_id, space, source_id in self.connection.execute(
                f"SELECT id, space, source_id FROM items WHERE id IN ({marks})", chunk
            ):
                removed.setdefault(space, []).append(item_id)
                if source_id is not None:
                    sources.add(source_id)
        self.delete_items(i for space_ids in removed.values() for i in space_ids)
        self.connection.executemany(
            "DELETE FROM sources WHERE id = ? AND NOT EXISTS (SELECT 1 FROM items WHERE source_id = ?)",
            [(source_id, source_id) for source_id in sorted(sources)],
        )
        return removed

    def item_space(self, item_id: int) -> str | None:
        """The vector space of an item, or None when there is no such item."""
        row = self.connection.execute("SELECT space FROM items WHERE id = ?", (int(item_id),)).fetchone()
        return row[0] if row else None

    def item_ids_with_uri(self, uri: str) -> list[int]:
        """Ids of the items made from the file at ``uri`` (by any pipeline)."""
        return [row[0] for row in self.connection.execute("SELECT id FROM items WHERE uri = ? ORDER BY id", (uri,))]

    def get_items(self, item_ids: Iterable[int], with_vectors: bool = False) -> dict[int, Item]:
        ids = [int(i) for i in item_ids]
        found: dict[int, Item] = {}
        columns = "id, kind, uri, content_hash, box, t_start, t_end, labels, metadata" + (", vector" if with_vectors else "")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.connection.execute(f"SELECT {columns} FROM items WHERE id IN ({marks})", chunk):
                found[row[0]] = _row_to_item(row, with_vectors)
        return found

    def item_ids(self, space: str) -> np.ndarray:
        rows = self.connection.execute("SELECT id FROM items WHERE space = ? ORDER BY id", (space,)).fetchall()
        return np.array([row[0] for row in rows], dtype=np.int64)

    def vectors(self, space: str, item_ids: Iterable[int] | None = None, chunk: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of a space in chunks, optionally only the given ids."""
        if item_ids is None:
            cursor = self.connection.execute("SELECT id, vector FROM items WHERE space = ? ORDER BY id", (space,))
            while rows := cursor.fetchmany(chunk):
                yield _stack(rows)
            return
        ids = [int(i) for i in item_ids]
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.connection.execute(f"SELECT id, vector FROM items WHERE id IN ({marks}) ORDER BY id", part).fetchall()
            if rows:
                yield _stack(rows)

    def counts_by_kind(self) -> dict[str, int]:
        return dict(self.connection.execute("SELECT kind, COUNT(*) FROM items GROUP BY kind ORDER BY kind").fetchall())

    def count_items(self, space: str | None = None) -> int:
        if space is None:
            return self.connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return self.connection.execute("SELECT COUNT(*) FROM items WHERE space = ?", (space,)).fetchone()[0]

    def items_matching(
        self, kinds: Iterable[str] | None = None, label: str | None = None, time_span: tuple[float, float] | None = None
    ) -> set[int]:
        """Ids of items of the given kinds, carrying ``label``, overlapping ``time_span``."""
        where, params = ItemFilter.of(list(kinds or []), label, time_span).sql()
        return {row[0] for row in self.connection.execute(f"SELECT id FROM items WHERE {where}", params)}


class _Transaction:
    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _stamp(members: str) -> Stamp:
    return tuple((path, size, mtime) for path, size, mtime in json.loads(members))


def migrate_v1(connection: sqlite3.Connection) -> None:
    """Schema 1 (one file per source: ``sources(uri, size, mtime)`` and a separate ``skipped`` table)
    to schema 2, in one transaction: each file becomes a source with that file as its one member;
    source and item ids are kept, so the vector indexes stay valid."""
    connection.execute("PRAGMA foreign_keys=OFF")
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:  # another process was first
            connection.execute("COMMIT")
            return
        connection.execute(
            "CREATE TABLE sources_v2 (id INTEGER PRIMARY KEY, uri TEXT NOT NULL, pipeline TEXT NOT NULL, members TEXT NOT NULL, "
            "content_hash TEXT, skip_reason TEXT, indexed_at REAL NOT NULL, UNIQUE (uri, pipeline))"
        )
        rows = connection.execute("SELECT id, uri, pipeline, content_hash, size, mtime, indexed_at FROM sources").fetchall()
        connection.executemany(
            "INSERT INTO sources_v2 (id, uri, pipeline, members, content_hash, indexed_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(id_, uri, pipe, json.dumps([[uri, size, mtime]]), digest, at) for id_, uri, pipe, digest, size, mtime, at in rows],
        )
        skipped = connection.execute("SELECT uri, pipeline, reason, size, mtime FROM skipped").fetchall()
        connection.executemany(
            "INSERT INTO sources_v2 (uri, pipeline, members, skip_reason, indexed_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (uri, pipeline) DO UPDATE SET members = excluded.members, skip_reason = excluded.skip_reason",
            [(uri, pipe, json.dumps([[uri, size, mtime]]), reason, time.time()) for uri, pipe, reason, size, mtime in skipped],
        )
        connection.execute("DROP TABLE sources")
        connection.execute("DROP TABLE skipped")
        connection.execute("ALTER TABLE sources_v2 RENAME TO sources")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if connection.execute("PRAGMA foreign_key_check").fetchall():
            raise sqlite3.IntegrityError("items point at sources that the migration lost")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _stack(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(row[1], dtype=np.float32) for row in rows])
    return ids, vectors


def _row_to_item(row: tuple, with_vector: bool) -> Item:
    item_id, kind, uri, content_hash, box, t_start, t_end, labels, metadata = row[:9]
    return Item(
        kind=kind,
        uri=uri,
        vector=np.frombuffer(row[9], dtype=np.float32) if with_vector else np.empty(0, dtype=np.float32),
        content_hash=content_hash,
        box=tuple(json.loads(box)) if box else None,
        t_start=t_start,
        t_end=t_end,
        labels=json.loads(labels),
        metadata=json.loads(metadata),
        id=item_id,
    )

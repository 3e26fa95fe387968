"""The SQLite catalog: sources (files a pipeline has read), items (what was indexed) and skipped files.

Items keep their raw descriptor, so the vector index is a derived file that
can always be rebuilt from the catalog. Every write happens in one
transaction, so an interrupted run leaves either all of a batch or none.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cbir.collection.readonly import connect_read_only

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
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
CREATE TABLE IF NOT EXISTS skipped (
    uri TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    PRIMARY KEY (uri, pipeline)
);
"""


@dataclass
class Item:
    """One searchable thing: a whole image, a region, a face, a video frame or shot."""

    kind: str
    uri: str
    vector: np.ndarray
    content_hash: str | None = None
    box: tuple[float, float, float, float] | None = None
    t_start: float | None = None
    t_end: float | None = None
    labels: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class SourceState:
    """What the catalog knows of a file it has read before."""

    id: int
    content_hash: str
    size: int
    mtime: float


class Catalog:
    """Thin typed layer over the SQLite file."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        if read_only:
            self.connection = connect_read_only(self.path)
            return
        self.connection = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.executescript(SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def transaction(self) -> "_Transaction":
        """``with catalog.transaction():`` groups writes atomically."""
        return _Transaction(self.connection)

    # sources -----------------------------------------------------------------
    def sources(self, pipeline: str) -> dict[str, SourceState]:
        rows = self.connection.execute(
            "SELECT uri, id, content_hash, size, mtime FROM sources WHERE pipeline = ?", (pipeline,)
        )
        return {uri: SourceState(id_, content_hash, size, mtime) for uri, id_, content_hash, size, mtime in rows}

    def pipelines(self, prefix: str = "") -> dict[str, int]:
        """Number of sources of each pipeline whose name starts with ``prefix``."""
        rows = self.connection.execute(
            "SELECT pipeline, COUNT(*) FROM sources WHERE substr(pipeline, 1, ?) = ? GROUP BY pipeline ORDER BY pipeline",
            (len(prefix), prefix),
        )
        return dict(rows.fetchall())

    def skipped(self, pipeline: str | None = None) -> dict[tuple[str, str], tuple[str, int, float]]:
        query = "SELECT uri, pipeline, reason, size, mtime FROM skipped"
        rows = self.connection.execute(query + (" WHERE pipeline = ?" if pipeline else ""), (pipeline,) if pipeline else ())
        return {(uri, pipe): (reason, size, mtime) for uri, pipe, reason, size, mtime in rows}

    def record_source(self, uri: str, pipeline: str, content_hash: str, size: int, mtime: float) -> int:
        """Insert or refresh a source row and return its id; its old items are removed by the caller."""
        self.connection.execute("DELETE FROM skipped WHERE uri = ? AND pipeline = ?", (uri, pipeline))
        row = self.connection.execute(
            "INSERT INTO sources (uri, pipeline, content_hash, size, mtime, indexed_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (uri, pipeline) DO UPDATE SET content_hash = excluded.content_hash, size = excluded.size, "
            "mtime = excluded.mtime, indexed_at = excluded.indexed_at RETURNING id",
            (uri, pipeline, content_hash, size, mtime, time.time()),
        ).fetchone()
        return row[0]

    def record_skipped(self, uri: str, pipeline: str, reason: str, size: int, mtime: float) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO skipped (uri, pipeline, reason, size, mtime) VALUES (?, ?, ?, ?, ?)",
            (uri, pipeline, reason, size, mtime),
        )

    def forget_skipped(self, uri: str, pipeline: str) -> None:
        self.connection.execute("DELETE FROM skipped WHERE uri = ? AND pipeline = ?", (uri, pipeline))

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

    def items_matching(self, kinds: Iterable[str] | None = None, label: str | None = None) -> set[int]:
        """Ids of items of the given kinds and carrying ``label``."""
        clauses, params = [], []
        kinds = list(kinds or [])
        if kinds:
            clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
            params += kinds
        if label is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(items.labels) WHERE json_each.value = ?)")
            params.append(label)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return {row[0] for row in self.connection.execute(f"SELECT id FROM items{where}", params)}


class _Transaction:
    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


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

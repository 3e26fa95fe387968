"""``cbir doctor``: check every file of a collection against its catalog, and repair what the catalog can rebuild.

Checks, in order: the catalog (present, a readable SQLite database with a
collection in it), the manifest (present, readable, describing the catalog's
vectors), each space's FAISS index (written for this catalog, intact, with
exactly the catalog's items), the indexed files (still there, unchanged), and
leftovers of interrupted runs (temporary files, uploads never indexed,
skipped files that are gone). Repairs happen under the collection's write
lock and only ever derive from the catalog; a damaged catalog is reported,
never rewritten.
"""

from __future__ import annotations

import json

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from cbir.collection import integrity
from cbir.collection.errors import CollectionError
from cbir.collection.manifest import Manifest
from cbir.collection.readonly import connect_read_only

EXAMPLES = 3


@dataclass
class Finding:
    """One check: ``ok``, ``problem`` (left as it is) or ``repaired``."""

    check: str
    status: str
    detail: str


@dataclass
class Diagnosis:
    path: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems_left(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.status == "problem"]

    def add(self, check: str, status: str, detail: str) -> None:
        self.findings.append(Finding(check, status, detail))

    def to_dict(self) -> dict:
        return {"path": str(self.path), "healthy": not self.problems_left, "findings": [vars(f) for f in self.findings]}


def diagnose(path: str | Path, repair: bool = False) -> Diagnosis:
    """Check the collection at ``path``; with ``repair``, fix what can be derived from the catalog."""
    path = Path(path)
    diagnosis = Diagnosis(path)
    if not path.is_dir():
        raise CollectionError(f"{path} is not a folder")
    if not _catalog_is_sound(path, diagnosis):
        return diagnosis
    if repair:
        with FileLock(str(path / integrity.LOCK_FILE)):
            _examine(path, diagnosis, repair=True)
    else:
        _examine(path, diagnosis, repair=False)
    return diagnosis


def _catalog_is_sound(path: Path, diagnosis: Diagnosis) -> bool:
    try:
        integrity.check_catalog_file(path)
        connection = connect_read_only(path / integrity.CATALOG_FILE)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            connection.close()
    except (CollectionError, sqlite3.DatabaseError) as error:
        diagnosis.add("catalog", "problem", str(error))
        return False
    if verdict != "ok":
        diagnosis.add("catalog", "problem", f"SQLite finds damage ({verdict}); restore catalog.sqlite from a backup")
        return False
    diagnosis.add("catalog", "ok", "readable, no damage found")
    return True


def _examine(path: Path, diagnosis: Diagnosis, repair: bool) -> None:
    from cbir.collection.collection import Collection

    if not _check_manifest(path, diagnosis, repair):
        return
    with Collection.open(path, read_only=not repair) as collection:
        for space in collection.manifest.spaces:
            _check_index(collection, space, diagnosis, repair)
        _check_files(collection, diagnosis)
        _check_leftovers(collection, diagnosis, repair)


def _check_manifest(path: Path, diagnosis: Diagnosis, repair: bool) -> bool:
    manifest_file = path / integrity.MANIFEST_FILE
    connection = connect_read_only(path / integrity.CATALOG_FILE)
    try:
        stored = integrity.stored_manifest(connection)
    finally:
        connection.close()
    try:
        manifest = Manifest.load(manifest_file) if manifest_file.is_file() else None
        problem = None if manifest is not None else "missing"
    except (ValueError, KeyError, TypeError) as error:
        manifest, problem = None, f"unreadable ({error})"
    if manifest is not None and stored is not None:
        differences = integrity.describe_differences(stored, manifest)
        problem = "does not describe the catalog's vectors: " + "; ".join(differences) if differences else None
    if problem is None:
        diagnosis.add("manifest", "ok", "describes the catalog's vectors" if stored else "no record in the catalog yet")
        return True
    if stored is None:
        diagnosis.add("manifest", "problem", f"{problem}, and the catalog predates its record: restore manifest.json from a backup")
        return False
    if not repair:
        diagnosis.add("manifest", "problem", f"{problem}; --repair writes it again from the catalog's record")
        return False
    stored.save(manifest_file)
    diagnosis.add("manifest", "repaired", f"{problem}; written again from the catalog's record")
    return True


def _check_index(collection, space: str, diagnosis: Diagnosis, repair: bool) -> None:
    import numpy as np

    store = collection.space(space).store
    catalog_ids = collection.catalog.item_ids(space)
    if store != "faiss":  # opening a Milvus store for writing brings it in line with the catalog
        held = collection.index(space).ids()
        if np.array_equal(held, catalog_ids):
            diagnosis.add(f"index {space}", "ok", f"{len(held)} items in {store}, as in the catalog")
        else:
            diagnosis.add(f"index {space}", "problem", f"{store} holds {len(held)} items, the catalog {len(catalog_ids)}; --repair brings it in line")
        return
    index_path, meta_path = collection._index_paths(space)
    meta = integrity.read_index_meta(meta_path) if index_path.is_file() else None
    if meta is None:
        problem = "missing" if not index_path.is_file() else "its metadata is missing or unreadable"
    elif not integrity.index_file_is_ours(meta, index_path, collection.catalog.connection):
        problem = "written for another catalog, or changed since it was written"
    else:
        held = collection.index(space).ids()
        problem = None if np.array_equal(np.sort(held), catalog_ids) else f"holds {len(held)} items, the catalog {len(catalog_ids)}"
    check = f"index {space}"
    if problem is None:
        diagnosis.add(check, "ok", f"{len(catalog_ids)} items, as in the catalog")
    elif not repair:
        diagnosis.add(check, "problem", f"{problem}; --repair rebuilds it from the catalog (searches rebuild it in memory meanwhile)")
    else:
        integrity.remove_files([index_path, meta_path])
        collection._indexes.pop(space, None)
        collection.index(space)
        collection._save_index(space, collection.index(space))
        diagnosis.add(check, "repaired", f"{problem}; rebuilt from the catalog's {len(catalog_ids)} vectors")


def _check_files(collection, diagnosis: Diagnosis) -> None:
    missing, changed, total = [], [], 0
    indexed = collection.catalog.connection.execute("SELECT members FROM sources WHERE content_hash IS NOT NULL")
    for (members,) in indexed:
        for member, size, mtime in json.loads(members):
            total += 1
            try:
                stat = Path(member).stat()
            except OSError:
                missing.append(member)
                continue
            if (stat.st_size, stat.st_mtime) != (size, mtime):
                changed.append(member)
    if not missing and not changed:
        diagnosis.add("files", "ok", f"all {total} indexed files are there, unchanged")
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} gone (e.g. {', '.join(missing[:EXAMPLES])})")
    if changed:
        parts.append(f"{len(changed)} changed (e.g. {', '.join(changed[:EXAMPLES])})")
    diagnosis.add(
        "files", "problem", f"of {total} indexed files, {' and '.join(parts)}: 'cbir index --sync FOLDER' brings the catalog in line"
    )


def _check_leftovers(collection, diagnosis: Diagnosis, repair: bool) -> None:
    known = {row[0] for row in collection.catalog.connection.execute("SELECT uri FROM sources")}
    temporaries = integrity.stale_temporaries(collection.path)
    uploads = integrity.orphaned_uploads(collection.path / integrity.UPLOADS_FOLDER, known)
    skipped = collection.catalog.skipped()
    gone = [(uri, pipeline) for uri, pipeline in skipped if not Path(uri).exists()]
    found = {
        "temporary files of interrupted writes": temporaries,
        "uploads never indexed": uploads,
        "skipped files that are gone": gone,
    }
    found = {name: entries for name, entries in found.items() if entries}
    if not found:
        diagnosis.add("leftovers", "ok", "none")
        return
    described = ", ".join(f"{len(entries)} {name}" for name, entries in found.items())
    if not repair:
        diagnosis.add("leftovers", "problem", f"{described}; --repair removes them")
        return
    integrity.remove_files(temporaries)
    integrity.remove_uploads(uploads)
    with collection.catalog.transaction():
        for uri, pipeline in gone:
            collection.catalog.forget_skipped(uri, pipeline)
    diagnosis.add("leftovers", "repaired", f"{described}: removed")

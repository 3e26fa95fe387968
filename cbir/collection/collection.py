"""A collection on disk: ``manifest.json``, ``catalog.sqlite`` and one FAISS index per vector space.

The catalog is the source of truth (it keeps every raw descriptor); FAISS
indexes and whitening are derived and rebuilt from it whenever they
disagree, so an interrupted run never leaves a broken collection. Every space
is handled alike: its pipeline is rebuilt from the space's record through
``cbir.pipelines.PIPELINES``, and its index searches at the space's stored
effort.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
from filelock import FileLock
from PIL import Image

from cbir.collection import integrity
from cbir.collection.catalog import Catalog, SourceState
from cbir.collection.errors import CollectionError
from cbir.collection.files import find_files
from cbir.collection.manifest import FORMAT, Manifest, SpaceInfo
from cbir.collection.readonly import ReadOnlyLock, is_writable
from cbir.collection.vector_store import FAISS_STORE, ItemFilter, check_store
from cbir.encoders.spec import DEFAULT_BATCH_SIZE, EncoderSpec
from cbir.encoders.whitening import PCAWhitening
from cbir.io.atomic import atomic_write
from cbir.pipelines import PIPELINES, Pipeline, Source
from cbir.pipelines.pipeline import public_record
from cbir.pipelines.sources import Stamp

if TYPE_CHECKING:  # FAISS and the network load when a command searches or encodes, not to read a collection
    from cbir.collection.vector_index import VectorIndex
    from cbir.collection.vector_store import VectorStore
    from cbir.encoders.encoder import Encoder

DEFAULT_PIPELINE = "image"  # what a new collection is created for unless told otherwise
SAVE_EVERY_ITEMS = 5000


@dataclass
class SearchResult:
    """One ranked hit."""

    rank: int
    score: float
    item_id: int
    uri: str
    kind: str
    box: tuple[float, float, float, float] | None = None
    t_start: float | None = None
    t_end: float | None = None
    labels: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {"rank": self.rank, "score": round(self.score, 6), "uri": self.uri, "kind": self.kind, "item_id": self.item_id}
        for key in ("box", "t_start", "t_end"):
            if getattr(self, key) is not None:
                data[key] = list(self.box) if key == "box" else getattr(self, key)
        if self.labels:
            data["labels"] = self.labels
        return data


@dataclass
class IndexReport:
    """What one ``add`` did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    gone: int = 0  # files indexed before and deleted since, left in place (no ``sync``)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    previously_skipped: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = dict(vars(self))
        data["skipped"] = [{"uri": uri, "reason": reason} for uri, reason in self.skipped]
        return data


ProgressCallback = Callable[[int, int], None]  # (files done in this step, files total)


class Collection:
    """Items with vectors in one directory; use ``create`` or ``open``."""

    def __init__(self, path: Path, manifest: Manifest, read_only: bool = False):
        self.path = path
        self.manifest = manifest
        self.read_only = read_only
        self.catalog = Catalog(path / "catalog.sqlite", read_only=read_only)
        self.lock = ReadOnlyLock(path) if read_only else FileLock(str(path / ".write.lock"))
        self._pipelines: dict[str, Pipeline] = {}
        self._requested_records: dict[str, dict] = {}  # a space's record as the caller has it (same identity, new paths)
        self._indexes: dict[str, VectorIndex] = {}
        self._whitening: dict[str, PCAWhitening | None] = {}

    # opening -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        encoder: EncoderSpec | None = None,
        index: str = "Flat",
        search_effort: int | None = None,
        pipeline: Pipeline | None = None,
        store: str = FAISS_STORE,
    ) -> "Collection":
        """A new, empty collection at ``path`` for ``pipeline``'s items (whole images encoded by ``encoder``
        by default), in a ``index`` FAISS index searched at ``search_effort`` (a default for IVF and HNSW),
        or that index's equivalent in another ``store`` (``cbir.collection.vector_store``)."""
        path = Path(path).expanduser()
        if (path / "manifest.json").exists():
            raise CollectionError(f"{path} already holds a collection: open it instead")
        from cbir.collection.vector_index import VectorIndex

        pipeline = pipeline or PIPELINES.create(DEFAULT_PIPELINE, record=(encoder or EncoderSpec()).to_dict())
        record, dim = pipeline.space_record()
        effort = _space_effort(VectorIndex(index, dim), search_effort)  # fail now on a bad factory string or effort
        store = check_store(store, index)
        manifest = Manifest({pipeline.space: SpaceInfo(pipeline.kind, record, dim, index, effort, store)}, pipeline.space)
        with integrity.creating(path):
            catalog = Catalog(path / "catalog.sqlite")
            integrity.record_manifest(catalog.connection, manifest)
            catalog.close()
            manifest.save(path / "manifest.json")
        collection = cls(path, manifest)
        collection._pipelines[pipeline.space] = pipeline
        return collection

    @classmethod
    def open(
        cls, path: str | Path, encoder: EncoderSpec | Encoder | None = None, read_only: bool | None = None
    ) -> "Collection":
        """Open an existing collection (migrating one of an older format); ``encoder``, when given, must be
        the one its default space was built with.

        A loaded ``Encoder`` is used as it is rather than loaded again. ``read_only``
        (by default: when the folder cannot be written) opens it for searching only.
        """
        path = Path(path).expanduser()
        integrity.refuse_catalog_without_manifest(path)
        if not (path / "manifest.json").is_file():
            raise CollectionError(f"no collection at {path}: create one with 'cbir index DIR --collection {path}'")
        try:
            manifest = Manifest.load(path / "manifest.json")
        except (ValueError, KeyError, TypeError) as error:
            raise CollectionError(
                f"{path / 'manifest.json'} is damaged ({error}); {integrity.repair_hint(path)} restores it from the catalog"
            ) from None
        integrity.check_catalog_file(path)
        read_only = not is_writable(path) if read_only is None else read_only
        collection = cls(path, manifest, read_only)
        try:
            integrity.check_manifest(path, manifest, collection.catalog.connection, writable=not read_only)
        except CollectionError:
            collection.close()
            raise
        if collection.manifest.format < FORMAT and not read_only:
            collection._upgrade_manifest()
        if isinstance(encoder, EncoderSpec):
            collection.check_encoder(encoder)
            collection._requested_records[collection.default_space] = {**collection.space().encoder, **encoder.to_dict()}
        elif encoder is not None:
            collection.check_encoder(encoder.spec)
            info = collection.space()
            collection._adopt(collection.default_space, PIPELINES.create(info.pipeline, record=info.encoder, encoder=encoder))
        return collection

    @classmethod
    def open_or_create(
        cls, path: str | Path, encoder: EncoderSpec | None = None, index: str = "Flat", search_effort: int | None = None,
        store: str | None = None,
    ) -> "Collection":
        """Open the collection at ``path`` (storing ``search_effort`` for its default space when given) or create it
        (in ``store``, FAISS by default; an existing collection must already be in it)."""
        if not (Path(path).expanduser() / "manifest.json").is_file():
            try:
                return cls.create(path, encoder, index, search_effort, store=store or FAISS_STORE)
            except integrity.CollectionExistsError:
                pass  # created by another process meanwhile
        collection = cls.open(path, encoder)
        if store is not None and store != collection.space().store:
            collection.close()
            raise CollectionError(
                f"{path} keeps its vectors in {collection.space().store!r}, not {store!r}: omit --store, "
                f"or move them with 'cbir migrate --collection {path} --to {store}'"
            )
        if search_effort is not None:
            collection.set_search_effort(search_effort)
        return collection

    def _upgrade_manifest(self) -> None:
        """Write a manifest of an older format in the current one; IVF and HNSW spaces, which searched at
        FAISS's defaults, get the default search effort."""
        from cbir.collection.vector_index import VectorIndex

        with self.lock:
            for info in self.manifest.spaces.values():
                if info.search_effort is None:
                    info.search_effort = _space_effort(VectorIndex(info.index, info.dim), None)
            self.manifest.format = FORMAT
            self._save_manifest()

    def _save_manifest(self) -> None:
        """Write the manifest, and its record in the catalog that later openings check it against."""
        integrity.record_manifest(self.catalog.connection, self.manifest)
        self.manifest.save(self.path / "manifest.json")

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()
        self.catalog.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # spaces and their pipelines ------------------------------------------------
    @property
    def default_space(self) -> str:
        """The space the collection was created for: queries by example go there unless told otherwise."""
        return self.manifest.default_space

    def space(self, name: str | None = None) -> SpaceInfo:
        """The record of a space (the default one when ``name`` is None)."""
        name = name or self.default_space
        if name not in self.manifest.spaces:
            raise CollectionError(f"{self.path} has no {name!r} space (it has: {', '.join(self.manifest.spaces) or 'none'})")
        return self.manifest.spaces[name]

    def pipeline(self, space: str | None = None) -> Pipeline:
        """The pipeline that fills ``space``, rebuilt from the space's record."""
        space = space or self.default_space
        if space not in self._pipelines:
            info = self.space(space)
            self._adopt(space, PIPELINES.create(info.pipeline, record=self._requested_records.get(space, info.encoder)))
        return self._pipelines[space]

    def _adopt(self, space: str, pipeline: Pipeline) -> None:
        dim = pipeline.space_record()[1]
        if dim != self.space(space).dim:
            raise CollectionError(
                f"the {space} encoder now gives {dim}-d vectors but {self.path} holds "
                f"{self.space(space).dim}-d ones; were its weights changed?"
            )
        self._pipelines[space] = pipeline

    def add_space(self, pipeline: Pipeline, index: str = "Flat", search_effort: int | None = None) -> None:
        """Declare the vector space ``pipeline`` fills (for example ``face``); an existing one must match."""
        record, dim = pipeline.space_record()
        existing = self.manifest.spaces.get(pipeline.space)
        if existing is not None:
            if existing.encoder != record or existing.dim != dim:
                raise CollectionError(f"space {pipeline.space!r} of {self.path} was built with another encoder: {public_record(existing.encoder)}")
            return
        from cbir.collection.vector_index import VectorIndex

        effort = _space_effort(VectorIndex(index, dim), search_effort)
        store = self.space().store if self.manifest.spaces else FAISS_STORE
        self.manifest.spaces[pipeline.space] = SpaceInfo(pipeline.kind, record, dim, index, effort, check_store(store, index))
        self.manifest.default_space = self.manifest.default_space or pipeline.space
        self._save_manifest()
        self._pipelines[pipeline.space] = pipeline

    def set_search_effort(self, effort: int, space: str | None = None) -> None:
        """Store the effort (IVF nprobe, HNSW efSearch) a space's index searches at."""
        from cbir.collection.vector_index import VectorIndex

        space = space or self.default_space
        info = self.space(space)
        with self.lock:
            info.search_effort = _space_effort(VectorIndex(info.index, info.dim), effort)
            self._save_manifest()
        if space in self._indexes:
            self._indexes[space].set_search_effort(effort)

    def move_to_store(self, store: str) -> None:
        """Keep every space's vectors in ``store`` from now on: the new store is filled from the catalog
        before the manifest names it, so an interrupted move leaves the collection in its old store."""
        with self.lock:
            for info in self.manifest.spaces.values():
                check_store(store, info.index)
            for index in self._indexes.values():
                index.close()
            self._indexes.clear()
            previous = {name: info.store for name, info in self.manifest.spaces.items()}
            for name, info in self.manifest.spaces.items():
                info.store = store
                try:
                    self.index(name)
                except BaseException:
                    for space, old in previous.items():
                        self.manifest.spaces[space].store = old
                    raise
            self._save_manifest()

    # the default space's encoder -------------------------------------------------
    @property
    def encoder_spec(self) -> EncoderSpec:
        """The spec of the default space's encoder."""
        return EncoderSpec.from_dict(self.space().encoder)

    def check_encoder(self, spec: EncoderSpec) -> None:
        stored = self.encoder_spec
        if spec.precision != stored.precision:
            raise CollectionError(
                f"{self.path} was indexed at precision {stored.precision}, not {spec.precision}: vectors of two precisions "
                f"do not mix; index at {stored.precision} (omit --precision) or into a new collection"
            )
        if spec.identity() != stored.identity():
            differences = {
                key: (value, spec.identity().get(key))
                for key, value in stored.identity().items()
                if spec.identity().get(key) != value
            }
            described = ", ".join(f"{key}: collection {old!r} vs requested {new!r}" for key, (old, new) in differences.items())
            raise CollectionError(
                f"{self.path} was built with a different encoder ({described}); "
                "use the collection's own encoder (omit the encoder options) or index into a new collection"
            )

    @property
    def encoder(self) -> Encoder:
        """The default space's encoder."""
        return self.pipeline().encoder

    # derived state: whitening and FAISS indexes ------------------------------
    def _whitening_path(self, space: str) -> Path:
        return self.path / f"whitening-{space}.npz"

    def _index_paths(self, space: str) -> tuple[Path, Path]:
        return self.path / f"index-{space}.faiss", self.path / f"index-{space}.json"

    def whitening(self, space: str | None = None) -> PCAWhitening | None:
        space = space or self.default_space
        if space not in self._whitening:
            path = self._whitening_path(space)
            self._whitening[space] = PCAWhitening.load(path) if path.is_file() else None
        return self._whitening[space]

    def _whitening_stamp(self, space: str) -> str | None:
        path = self._whitening_path(space)
        return f"{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else None

    def _transform(self, space: str, vectors: np.ndarray) -> np.ndarray:
        whitening = self.whitening(space)
        return whitening.apply(vectors) if whitening is not None else np.asarray(vectors, dtype=np.float32)

    def _index_dim(self, space: str) -> int:
        whitening = self.whitening(space)
        return whitening.dim if whitening is not None else self.space(space).dim

    def index(self, space: str | None = None) -> VectorIndex:
        """The space's FAISS index, in line with the catalog, set to search at the space's effort."""
        space = space or self.default_space
        if space not in self._indexes:
            index = self._load_or_rebuild_index(space)
            if self.space(space).search_effort is not None:
                index.set_search_effort(self.space(space).search_effort)
            self._indexes[space] = index
        return self._indexes[space]

    def _load_or_rebuild_index(self, space: str) -> VectorIndex:
        from cbir.collection.vector_index import VectorIndex

        info = self.space(space)
        if info.store != FAISS_STORE:
            return self._open_store(space)
        index_path, meta_path = self._index_paths(space)
        dim = self._index_dim(space)
        index = None
        meta = integrity.read_index_meta(meta_path) if index_path.is_file() else None
        if meta is not None and integrity.index_file_is_ours(meta, index_path, self.catalog.connection):
            if meta.get("whitening") == self._whitening_stamp(space) and meta.get("factory") == info.index:
                try:
                    index = VectorIndex.load(index_path, info.index, dim)
                except (RuntimeError, ValueError):
                    index = None
        rebuilt = index is None
        if rebuilt:
            index = VectorIndex(info.index, dim)
        catalog_ids = self.catalog.item_ids(space)
        index_ids = index.ids()
        extra = np.setdiff1d(index_ids, catalog_ids)
        missing = np.setdiff1d(catalog_ids, index_ids)
        if len(extra) and not index.remove(extra):
            index, missing = VectorIndex(info.index, dim), catalog_ids
        for ids, vectors in self.catalog.vectors(space, missing if len(missing) < len(catalog_ids) else None):
            index.add(ids, self._transform(space, vectors))
        index.train_if_possible()
        if len(extra) or len(missing) or (rebuilt and index_path.exists()):
            self._save_index(space, index)
        return index

    def _open_store(self, space: str) -> VectorStore:
        """The space's vectors in a store other than FAISS, brought in line with the catalog."""
        from cbir.collection import milvus_store

        info = self.space(space)
        record = {"collection": integrity.collection_id(self.catalog.connection), "pipeline": info.pipeline,
                  "encoder": info.encoder, "dim": self._index_dim(space), "index": info.index, "whitening": self._whitening_stamp(space)}
        rows = lambda ids: self.catalog.get_items(ids)  # noqa: E731
        store = milvus_store.open_store(info.store, self.path, space, info.index, self._index_dim(space), record, rows)
        if not self.read_only:
            milvus_store.bring_in_line(
                store, self.catalog.connection, space,
                lambda ids: ((chunk_ids, self._transform(space, vectors)) for chunk_ids, vectors in self.catalog.vectors(space, ids)),
            )
        return store

    def _save_index(self, space: str, index: VectorIndex) -> None:
        if self.read_only or self.space(space).store != FAISS_STORE:
            return
        index_path, meta_path = self._index_paths(space)
        index.save(index_path)
        meta = {"whitening": self._whitening_stamp(space), "factory": index.factory, "count": len(index)}
        meta.update(integrity.index_stamp(index_path, self.catalog.connection))
        with atomic_write(meta_path) as stream:
            stream.write(json.dumps(meta).encode())

    def learn_whitening(self, space: str | None = None, training: np.ndarray | None = None, dim: int | None = None) -> PCAWhitening:
        """Learn PCA-whitening (from ``training`` descriptors, else the space's own) and re-index."""
        space = space or self.default_space
        with self.lock:
            if training is None:
                training = self.vectors(space)[1]
                if not len(training):
                    raise CollectionError("the collection is empty: add items before learning a whitening")
            whitening = PCAWhitening.learn(training, dim)
            whitening.save(self._whitening_path(space))
            self._whitening[space] = whitening
            self._indexes.pop(space, None)
            self.index(space)
        return whitening

    def remove_whitening(self, space: str | None = None) -> None:
        space = space or self.default_space
        with self.lock:
            self._whitening_path(space).unlink(missing_ok=True)
            self._whitening[space] = None
            self._indexes.pop(space, None)
            self.index(space)

    def remove_items(self, item_ids: Iterable[int]) -> list[int]:
        """Remove items by id from the catalog and the indexes; returns the ids that existed.

        A source left without items is forgotten as well, so indexing its file again brings it back.
        """
        with self.lock:
            with self.catalog.transaction():
                removed = self.catalog.remove_items(item_ids)
            for space, ids in removed.items():
                index = self.index(space)
                if not index.remove(np.array(ids)):
                    self._indexes.pop(space)
                    index = self.index(space)
                self._save_index(space, index)
        return sorted(item_id for ids in removed.values() for item_id in ids)

    def vectors(self, space: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, raw descriptors) of every item of a space, in id order."""
        space = space or self.default_space
        chunks = list(self.catalog.vectors(space))
        if not chunks:
            return np.empty(0, dtype=np.int64), np.empty((0, self.space(space).dim), dtype=np.float32)
        return np.concatenate([ids for ids, _ in chunks]), np.concatenate([vectors for _, vectors in chunks])

    # adding ------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | Path],
        pipeline: Pipeline | None = None,
        sync: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index files and folders (recursively) with ``pipeline`` (the default space's by default).

        Only new or changed sources are processed. With ``sync``, sources under
        the given folders whose files are gone are removed.
        """
        started = time.perf_counter()
        pipeline = pipeline or self.pipeline()
        roots = [Path(p).expanduser().resolve() for p in paths]
        with self.lock:
            if pipeline.space not in self.manifest.spaces:
                self.add_space(pipeline)
            report = IndexReport()
            integrity.remove_files(integrity.stale_temporaries(self.path))
            found = find_files(roots, pipeline.accepts)
            report.skipped = list(found.skipped)
            sources = pipeline.sources(found.files)
            known = self.catalog.sources(pipeline.name)
            todo: list[tuple[Source, Stamp]] = []
            for source in sources:
                try:
                    stamp = source.stamp()
                except OSError as error:
                    report.skipped.append((source.uri, f"unreadable: {error.strerror or error}"))
                    continue
                state = known.get(source.uri)
                if state is not None and state.members == stamp:
                    if state.skip_reason is None:
                        report.unchanged += 1
                    else:
                        report.previously_skipped += 1
                        report.skipped.append((source.uri, state.skip_reason))
                    continue
                todo.append((source, stamp))
            index = self.index(pipeline.space)
            gone = _vanished_sources(roots, sources, known, indexed=True)
            if sync:
                self._remove_source_ids(gone, pipeline.space)
                report.removed = len(gone)
                self.catalog.remove_sources(_vanished_sources(roots, sources, known, indexed=False))
            else:
                report.gone = len(gone)
            if todo:
                self._process_and_store(pipeline, todo, known, report, batch_size, workers, progress)
            index = self.index(pipeline.space)
            if not index.train_if_possible() and len(index):
                raise CollectionError(
                    f"the {index.factory!r} index needs at least {index.min_training_vectors} vectors to train; "
                    f"the collection has {len(index)}. Add more items or create it with '--index Flat'"
                )
            self._save_index(pipeline.space, index)
        report.seconds = time.perf_counter() - started
        return report

    def _process_and_store(
        self, pipeline: Pipeline, todo: list[tuple[Source, Stamp]], known: dict[str, SourceState], report: IndexReport,
        batch_size: int, workers: int | None, progress: ProgressCallback | None,
    ) -> None:
        space = pipeline.space
        sources = [source for source, _ in todo]
        known_hashes = [known[source.uri].content_hash if source.uri in known else None for source in sources]
        done = since_save = 0
        for results in pipeline.run(sources, known_hashes, batch_size, workers):
            removed_ids: list[int] = []
            new_items: list[tuple[int, np.ndarray]] = []
            with self.catalog.transaction():
                for result in results:
                    source, stamp = todo[result.index]
                    previous = known.get(source.uri)
                    if result.error is not None:
                        self.catalog.record_skipped(source.uri, pipeline.name, stamp, result.error)
                        report.skipped.append((source.uri, result.error))
                        continue
                    if result.unchanged:
                        self.catalog.record_source(source.uri, pipeline.name, stamp, result.content_hash)
                        report.unchanged += 1
                        continue
                    if previous is not None and previous.indexed:
                        removed_ids += self.catalog.remove_sources([previous.id])
                        report.updated += 1
                    else:
                        report.added += 1
                    source_id = self.catalog.record_source(source.uri, pipeline.name, stamp, result.content_hash)
                    for item in result.items:
                        new_items.append((self.catalog.insert_item(item, space, source_id), item.vector))
            index = self.index(space)
            if removed_ids and not index.remove(np.array(removed_ids)):
                self._indexes.pop(space)
                index = self.index(space)
            if new_items:
                ids = np.array([item_id for item_id, _ in new_items], dtype=np.int64)
                index.add(ids, self._transform(space, np.stack([vector for _, vector in new_items])))
            done += len(results)
            since_save += len(new_items)
            if since_save >= SAVE_EVERY_ITEMS and index.is_trained:
                self._save_index(space, index)
                since_save = 0
            if progress is not None:
                progress(done, len(todo))

    def _remove_source_ids(self, source_ids: list[int], space: str) -> None:
        if not source_ids:
            return
        with self.catalog.transaction():
            removed_ids = self.catalog.remove_sources(source_ids)
        if not self.index(space).remove(np.array(removed_ids)):
            self._indexes.pop(space)
            self.index(space)

    def remove_sources(self, pipeline: str, space: str, uris: Iterable[str] | None = None) -> int:
        """Forget what ``pipeline`` made of the sources ``uris`` (of all its sources, skipped ones too, when
        None), with their items in ``space``; returns the number of indexed sources forgotten."""
        with self.lock:
            known = self.catalog.sources(pipeline)
            if uris is None:
                chosen = list(known.values())
            else:
                chosen = [known[uri] for uri in uris if uri in known and known[uri].indexed]
            self._remove_source_ids([state.id for state in chosen], space)
            if space in self._indexes:
                self._save_index(space, self._indexes[space])
        return sum(state.indexed for state in chosen)

    # searching ---------------------------------------------------------------
    def encode(self, image: str | Path | Image.Image, space: str | None = None) -> np.ndarray:
        """The raw descriptor (before whitening) of one query image in ``space`` (the default one)."""
        space = space or self.default_space
        encode = getattr(self.pipeline(space), "encode", None)
        if encode is None:
            raise CollectionError(f"the {space} space is searched with descriptors or stored items, not with a whole image")
        return encode(image)[0]

    def search(
        self,
        query: str | Path | Image.Image | np.ndarray | int,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        label: str | None = None,
        space: str | None = None,
        time_span: tuple[float, float] | None = None,
    ) -> list[SearchResult]:
        """Rank items by similarity to an image, a raw descriptor, or a stored item (by id).

        A stored item is compared within its own space.
        """
        if isinstance(query, (int, np.integer)):
            stored = self.catalog.get_items([int(query)], with_vectors=True)
            if not stored:
                raise CollectionError(f"no item with id {query}")
            vector = stored[int(query)].vector
            space = self.catalog.item_space(int(query))
        elif isinstance(query, np.ndarray):
            vector = query.astype(np.float32)
        else:
            vector = self.encode(query, space)
        return self.search_vectors(vector[None], k, kinds, label, space, time_span=time_span)[0]

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        label: str | None = None,
        space: str | None = None,
        transformed: bool = False,
        time_span: tuple[float, float] | None = None,
    ) -> list[list[SearchResult]]:
        """Ranked results for each raw descriptor (one row per query) in ``space`` (the default one), at the
        space's search effort, among items of ``kinds``, with ``label``, overlapping ``time_span``;
        ``transformed``: the vectors are already whitened like the index's (as re-ranking makes them)."""
        space = space or self.default_space
        index = self.index(space)
        if len(index) == 0:
            return [[] for _ in range(len(vectors))]
        queries = np.asarray(vectors, dtype=np.float32) if transformed else self._transform(space, vectors)
        item_filter = ItemFilter.of(kinds, label, time_span)
        if item_filter and index.filters_items:
            scores, ids = index.search(queries, k, item_filter=item_filter)
        else:
            allowed = None
            if item_filter:
                allowed = np.fromiter(self.catalog.items_matching(kinds, label, time_span), dtype=np.int64)
                if not len(allowed):
                    return [[] for _ in range(len(vectors))]
            scores, ids = index.search(queries, k, allowed)
        found = self.catalog.get_items({int(i) for i in ids.ravel() if i >= 0})
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = []
            for score, item_id in zip(row_scores, row_ids):
                if item_id < 0 or int(item_id) not in found:
                    continue
                item = found[int(item_id)]
                hits.append(
                    SearchResult(
                        len(hits) + 1, float(score), int(item_id), item.uri, item.kind,
                        item.box, item.t_start, item.t_end, item.labels, item.metadata,
                    )
                )
            results.append(hits)
        return results

    # information -------------------------------------------------------------
    def info(self) -> dict:
        """Counts, the default space's encoder, every space's index and search effort, and size on disk."""
        size = sum(file.stat().st_size for file in self.path.iterdir() if file.is_file())
        return {
            "path": str(self.path),
            "items": self.catalog.count_items(),
            "by_kind": self.catalog.counts_by_kind(),
            "encoder": {key: value for key, value in public_record(self.space().encoder).items() if key != "type"},
            "default_space": self.default_space,
            "spaces": {
                name: {
                    "pipeline": space.pipeline,
                    "dim": space.dim,
                    "index": space.index,
                    "store": space.store,
                    "search_effort": space.search_effort,
                    "search_effort_sets": _effort_name(space.index),
                    "items": self.catalog.count_items(name),
                    "whitening": self._whitening_path(name).is_file(),
                    "encoder": public_record(space.encoder),
                }
                for name, space in self.manifest.spaces.items()
            },
            "skipped": len(self.catalog.skipped()),
            "size_bytes": size,
            "versions": self.manifest.versions,
        }


def _space_effort(index: VectorIndex, requested: int | None) -> int | None:
    """The effort a space's index searches at: ``requested`` when given (checked against the index type),
    else the default for IVF and HNSW indexes, else None (exhaustive search)."""
    from cbir.collection.vector_index import DEFAULT_SEARCH_EFFORT, IndexSpecError

    if requested is None:
        return DEFAULT_SEARCH_EFFORT.get(index.effort_name)
    try:
        index.set_search_effort(requested)
    except IndexSpecError as error:
        raise CollectionError(f"{error}: drop --search-effort or choose an IVF or HNSW index") from None
    return requested


def _effort_name(factory: str) -> str | None:
    """What a search effort sets for a factory string, read without FAISS: efSearch, nprobe or None."""
    return "efSearch" if "HNSW" in factory else "nprobe" if "IVF" in factory else None


def _vanished_sources(roots: list[Path], sources: list, known: dict[str, SourceState], indexed: bool) -> list[int]:
    """Ids of the known sources under ``roots`` (indexed ones, or skipped ones) that were not found again
    and whose members are all gone."""
    present = {source.uri for source in sources}
    return [
        state.id
        for uri, state in known.items()
        if state.indexed == indexed
        and uri not in present
        and any(_is_within(Path(state.members[0][0]), root) for root in roots)
        and not any(Path(member).exists() for member, _, _ in state.members)
    ]


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents

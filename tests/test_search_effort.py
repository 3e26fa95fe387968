"""IVF and HNSW spaces search at the effort stored with them (nprobe, efSearch), not FAISS's defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cbir.cli import app
from cbir.collection.collection import Collection, CollectionError
from cbir.collection.vector_index import DEFAULT_SEARCH_EFFORT, VectorIndex
from cbir.core.items import Item
from tests.conftest import write_images

DIM = 32


class ArrayRows:
    """Stands in for a pipeline of precomputed vectors: the space's record, nothing to read."""

    kind = "arrays"
    name = "arrays"
    space = "vectors"

    def space_record(self) -> tuple[dict, int]:
        return {"type": "synthetic"}, DIM


def clustered(count: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 centres, so that IVF lists hold neighbours and nprobe matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM))
    vectors = centres[rng.integers(0, 50, count)] + 0.6 * rng.normal(size=(count, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth)]))


def store(path: Path, database: np.ndarray, factory: str, effort: int | None) -> list[int]:
    with Collection.create(path, index=factory, search_effort=effort, pipeline=ArrayRows()) as collection:
        with collection.catalog.transaction():
            ids = [collection.catalog.insert_item(Item("row", f"row:{i}", v), "vectors", None) for i, v in enumerate(database)]
        collection.index("vectors").train_if_possible()
    return ids


def test_an_ivf_collection_searches_at_its_stored_effort(tmp_path) -> None:
    database, queries = clustered(4000, 0), clustered(200, 1)
    truth = np.argsort(-(queries @ database.T), axis=1)[:, :10]
    ids = np.array(store(tmp_path / "c", database, "IVF64,Flat", 8))
    with Collection.open(tmp_path / "c") as collection:
        assert collection.space("vectors").search_effort == 8
        assert collection.info()["spaces"]["vectors"]["search_effort_sets"] == "nprobe"
        hits = collection.search_vectors(queries, k=10, space="vectors")
    stored = recall_at_10(np.array([[ids.tolist().index(h.item_id) for h in row] for row in hits]), truth)

    reference = VectorIndex("IVF64,Flat", DIM)
    reference.add(np.arange(len(database)), database)
    assert reference.train_if_possible() and reference.search_effort == 1  # FAISS's default nprobe
    at_default = recall_at_10(reference.search(queries, 10)[1], truth)
    reference.set_search_effort(8)
    explicit = recall_at_10(reference.search(queries, 10)[1], truth)
    assert stored == pytest.approx(explicit, abs=1e-9)
    assert stored > at_default + 0.1


def test_hnsw_gets_the_default_effort_and_it_can_be_changed(tmp_path) -> None:
    store(tmp_path / "c", clustered(500, 2), "HNSW32", None)
    with Collection.open(tmp_path / "c") as collection:
        assert collection.space("vectors").search_effort == DEFAULT_SEARCH_EFFORT["efSearch"]
        collection.set_search_effort(24, space="vectors")
        assert collection.index("vectors").search_effort == 24
    with Collection.open(tmp_path / "c") as collection:
        assert collection.index("vectors").search_effort == 24


def test_a_flat_collection_refuses_a_search_effort(tmp_path) -> None:
    with pytest.raises(CollectionError, match="searches exhaustively"):
        Collection.create(tmp_path / "c", index="Flat", search_effort=16, pipeline=ArrayRows())
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_cli_stores_the_effort_and_info_shows_it(tmp_path) -> None:
    folder = tmp_path / "images"
    write_images(folder, 3)
    runner = CliRunner()
    collection = str(tmp_path / "c")
    created = runner.invoke(app, ["index", str(folder), "-c", collection, "--index", "HNSW32", "--search-effort", "40", "--workers", "0"])
    assert created.exit_code == 0, created.output
    shown = runner.invoke(app, ["info", "-c", collection])
    assert "index HNSW32 (efSearch 40)" in shown.output
    runner.invoke(app, ["index", str(folder), "-c", collection, "--search-effort", "80", "--workers", "0"])
    details = json.loads(runner.invoke(app, ["info", "-c", collection, "--json"]).output)
    assert details["spaces"]["image"]["search_effort"] == 80

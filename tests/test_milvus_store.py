"""Milvus Lite as a collection's vector store: same hits as FAISS, filters inside Milvus, deletes,
re-indexing, and a run killed mid-way then run again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from cbir.collection import milvus_store  # noqa: E402
from cbir.collection.collection import Collection, CollectionError  # noqa: E402
from cbir.collection.doctor import diagnose  # noqa: E402
from cbir.collection.vector_index import VectorIndex  # noqa: E402
from cbir.collection.vector_store import ItemFilter, check_store, milvus_index  # noqa: E402
from cbir.core.items import Item  # noqa: E402
from tests.conftest import write_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _items(count: int) -> dict[int, Item]:
    """Items 1..count: every third a face, every fifth labelled ``red``, frames at t = id seconds."""
    items = {}
    for item_id in range(1, count + 1):
        kind = "face" if item_id % 3 == 0 else "frame"
        labels = ["red"] if item_id % 5 == 0 else []
        items[item_id] = Item(kind, f"/data/{item_id}.jpg", np.empty(0), labels=labels, t_start=float(item_id), metadata={"n": item_id})
    return items


@pytest.fixture
def lite_store(tmp_path):
    items = _items(600)
    store = milvus_store.open_store(
        "milvus-lite", tmp_path, "image", "Flat", 32, {"collection": "test"}, lambda ids: {i: items[i] for i in ids}
    )
    vectors = _unit_vectors(600, 32, seed=1)
    store.add(np.arange(1, 601), vectors)
    yield store, items, vectors
    store.close()


def test_top10_equals_faiss_flat_on_the_same_vectors(lite_store):
    store, _, vectors = lite_store
    faiss_index = VectorIndex("Flat", 32)
    faiss_index.add(np.arange(1, 601), vectors)
    queries = _unit_vectors(20, 32, seed=2)
    milvus_scores, milvus_ids = store.search(queries, 10)
    faiss_scores, faiss_ids = faiss_index.search(queries, 10)
    assert np.array_equal(milvus_ids, faiss_ids)
    assert np.allclose(milvus_scores, faiss_scores, atol=1e-5)


def test_filters_run_inside_milvus_and_match_the_catalog_rule(lite_store):
    store, items, vectors = lite_store
    query = vectors[:1]
    chosen = ItemFilter.of(kinds=["face"], label="red", time_span=(100.0, 400.0))
    expected = [i for i, item in items.items() if item.kind == "face" and "red" in item.labels and 100 <= item.t_start <= 400]
    scores, ids = store.search(query, 50, item_filter=chosen)
    found = ids[ids >= 0]
    assert sorted(found.tolist()) == sorted(expected)  # 15, 30, ... faces labelled red in [100, 400]: all of them, nothing else
    exact = vectors[np.array(expected) - 1] @ query[0]
    assert np.allclose(np.sort(scores[0][: len(found)])[::-1], np.sort(exact)[::-1], atol=1e-5)
    hits = store.search_hits(query, 3, item_filter=ItemFilter.of(kinds=["frame"]))[0]
    assert all(hit["entity"]["kind"] == "frame" and hit["entity"]["uri"] == f"/data/{hit['id']}.jpg" for hit in hits)


def test_delete_and_index_mapping(lite_store):
    store, _, vectors = lite_store
    store.remove(np.array([1, 2, 3]))
    assert len(store) == 597 and 1 not in store.ids()
    assert store.search(vectors[:1], 1)[1][0, 0] != 1
    assert milvus_index("HNSW32").params["M"] == 32 and milvus_index("IVF1024,PQ64").index_type == "IVF_PQ"
    with pytest.raises(CollectionError, match="no product quantisation"):
        check_store("milvus-lite", "IVF256,PQ16")
    with pytest.raises(CollectionError, match="unknown store"):
        check_store("milvus:/nohost", "Flat")


def test_collection_in_milvus_lite_index_reindex_delete_and_repair(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, 10)
    path = tmp_path / "collection"
    with Collection.open_or_create(path, store="milvus-lite") as collection:
        assert collection.add([folder], workers=0).added == 10
        assert collection.info()["spaces"]["image"]["store"] == "milvus-lite"
        assert collection.search(folder / "img_0004.jpg", k=1)[0].uri.endswith("img_0004.jpg")
        write_images(folder, 1, start=40)[0].rename(folder / "img_0004.jpg")  # the file changes
        report = collection.add([folder], workers=0)
        assert (report.updated, report.unchanged) == (1, 9)
        (folder / "img_0007.jpg").unlink()
        assert collection.add([folder], sync=True, workers=0).removed == 1
        assert np.array_equal(collection.index().ids(), collection.catalog.item_ids("image"))
        assert len(collection.search(folder / "img_0004.jpg", k=20)) == 9
        store = collection.index()
        store.remove(store.ids()[:1])  # an id left out and one the catalog never had: same count, same highest id
        stray = milvus_store._row(99_999, np.zeros(store.dim, dtype=np.float32), Item("image", "/gone.jpg", np.empty(0)))
        store.client.insert(store.name, [stray])
        assert len(store) == 9
        assert "index image" in [finding.check for finding in diagnose(path).problems_left]
    with Collection.open(path) as collection:
        assert np.array_equal(collection.index().ids(), collection.catalog.item_ids("image"))
    with pytest.raises(CollectionError, match="not 'faiss'"):
        Collection.open_or_create(path, store="faiss")


def _count_items(path: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(path / "catalog.sqlite", timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.timeout(300)
def test_kill_during_indexing_then_rerun_leaves_every_item_once_in_milvus(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, 24, size=(112, 84))
    path = tmp_path / "collection"
    command = [sys.executable, "-m", "cbir.cli", "index", str(folder), "--collection", str(path), "--store", "milvus-lite",
               "--batch-size", "4", "--workers", "0", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 240
    while _count_items(path) < 8 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _count_items(path)
    assert 0 < killed_at < 24, "the run was not killed mid-way"
    finished = subprocess.run(command, capture_output=True, env=env, timeout=240)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    with Collection.open(path) as collection:
        catalog_ids = collection.catalog.item_ids("image")
        assert len(catalog_ids) == 24
        stored = collection.index().ids()
        assert np.array_equal(stored, catalog_ids) and len(np.unique(stored)) == 24
        assert collection.search(folder / "img_0021.jpg", k=1)[0].uri.endswith("img_0021.jpg")


def test_migrate_a_faiss_collection_to_milvus_lite_and_back(tmp_path):
    from typer.testing import CliRunner

    from cbir.cli import app

    folder = tmp_path / "images"
    write_images(folder, 8)
    path = tmp_path / "collection"
    with Collection.create(path) as collection:
        collection.add([folder], workers=0)
        before = collection.search(folder / "img_0002.jpg", k=5)
    moved = CliRunner().invoke(app, ["migrate", "--collection", str(path), "--to", "milvus-lite", "--json"])
    assert moved.exit_code == 0, moved.output
    with Collection.open(path) as collection:
        assert collection.space().store == "milvus-lite"
        after = collection.search(folder / "img_0002.jpg", k=5)
        assert [hit.item_id for hit in after] == [hit.item_id for hit in before]
        assert np.allclose([hit.score for hit in after], [hit.score for hit in before], atol=1e-5)
        collection.move_to_store("faiss")
        assert collection.space().store == "faiss" and len(collection.index()) == 8


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline and server.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the Milvus Lite server did not start: {server.stderr.read().decode()[-2000:] if server.poll() is not None else 'timeout'}")


@pytest.mark.timeout(180)
def test_a_server_without_local_state_answers_from_a_milvus_server(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cbir.server.app import create_app

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "milvus"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        address = f"milvus://127.0.0.1:{port}/photos"
        folder = tmp_path / "images"
        write_images(folder, 6)
        _wait_for_port(port, server)
        with Collection.create(tmp_path / "collection", store=address) as collection:
            collection.add([folder], workers=0)
            expected = collection.search(folder / "img_0003.jpg", k=3)
        with TestClient(create_app(Path(), token="secret", store=address)) as client:
            with open(folder / "img_0003.jpg", "rb") as image:
                found = client.post("/search", files={"image": ("q.jpg", image, "image/jpeg")}, data={"k": "3"}).json()["results"]
            assert [hit["item_id"] for hit in found] == [hit.item_id for hit in expected]
            assert found[0]["uri"].endswith("img_0003.jpg")
            by_item = client.post("/search", data={"item_id": str(expected[1].item_id), "k": "1"}).json()["results"]
            assert by_item[0]["item_id"] == expected[1].item_id
            assert client.get(f"/items/{expected[0].item_id}").json()["content_hash"]
            assert client.get("/info").json()["items"] == 6
            assert client.delete(f"/items/{expected[0].item_id}", headers={"Authorization": "Bearer secret"}).status_code == 403
        with pytest.raises(CollectionError, match="another cbir collection"), Collection.create(tmp_path / "other", store=address) as other:
            other.add([folder], workers=0)
    finally:
        server.terminate()
        server.wait(timeout=30)

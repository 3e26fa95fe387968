"""The faults that once got through a collection: each one reproduced, and what must happen instead."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from cbir.collection.collection import Collection, CollectionError
from cbir.encoders.encoder import EncoderSpec
from tests.conftest import write_images


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """Two small collections of four different pictures each, indexed once for the module."""
    root = tmp_path_factory.mktemp("templates")
    made = {}
    for name, start in (("a", 0), ("b", 40)):
        images = root / f"images-{name}"
        write_images(images, 4, start=start, size=(96, 72))
        with Collection.create(root / name) as collection:
            collection.add([images], workers=0)
        made[name] = root / name
    return made


@pytest.fixture
def collection_path(templates, tmp_path) -> Path:
    path = tmp_path / "collection"
    shutil.copytree(templates["a"], path)
    return path


def _first_hit_is_itself(path: Path) -> bool:
    with Collection.open(path) as store:
        ids, vectors = store.vectors()
        return all(store.search(vector, k=1)[0].item_id == item_id for item_id, vector in zip(ids, vectors))


def test_a_name_that_is_not_utf8_is_skipped_with_its_reason_and_the_rest_indexed(tmp_path, encoder):
    images = tmp_path / "images"
    paths = write_images(images, 3, size=(96, 72))
    os.rename(bytes(paths[0]), os.fsencode(images) + b"/m\xe9t\xe9o.jpg")
    with Collection.create(tmp_path / "c") as store:
        report = store.add([images], workers=0)
        assert report.added == 2
        assert [(uri.rsplit("/", 1)[1], "UTF-8" in reason) for uri, reason in report.skipped] == [("m\\xe9t\\xe9o.jpg", True)]
        assert store.add([images], workers=0).unchanged == 2


def test_special_files_and_link_loops_are_listed_as_skipped(tmp_path):
    images = tmp_path / "images"
    write_images(images, 2, size=(96, 72))
    os.mkfifo(images / "pipe.jpg")
    os.symlink(images / "loop-b.jpg", images / "loop-a.jpg")
    os.symlink(images / "loop-a.jpg", images / "loop-b.jpg")
    with Collection.create(tmp_path / "c") as store:
        report = store.add([images], workers=0)
    reasons = {Path(uri).name: reason for uri, reason in report.skipped}
    assert report.added == 2
    assert "FIFO" in reasons["pipe.jpg"]
    assert "link loop" in reasons["loop-a.jpg"] and "link loop" in reasons["loop-b.jpg"]


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_missing_or_emptied_catalog_is_an_error_and_derived_files_stay(collection_path, damage):
    index_file = collection_path / "index-image.faiss"
    before = index_file.read_bytes()
    for file in collection_path.glob("catalog.sqlite*"):
        file.unlink()
    if damage == "emptied":
        (collection_path / "catalog.sqlite").touch()
    with pytest.raises(CollectionError, match="catalog.sqlite is (missing|empty).*restore it from a backup"):
        Collection.open(collection_path)
    assert index_file.read_bytes() == before


def test_an_edited_manifest_is_refused_and_doctor_restores_it(collection_path):
    from cbir.collection.doctor import diagnose

    manifest_file = collection_path / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["spaces"]["image"]["encoder"]["pooling"] = "gem"
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match="image.pooling: vectors made with 'rmac', manifest says 'gem'.*doctor"):
        Collection.open(collection_path)
    assert not diagnose(collection_path, repair=True).problems_left
    assert Collection.open(collection_path).encoder_spec.pooling == "rmac"


def test_a_catalog_without_manifest_is_not_adopted_by_another_encoder(collection_path):
    (collection_path / "manifest.json").unlink()
    with pytest.raises(CollectionError, match="no manifest.json.*doctor"):
        Collection.open_or_create(collection_path, EncoderSpec(pooling="gem"))
    with pytest.raises(CollectionError, match="no manifest.json"):
        Collection.open(collection_path)


def test_a_garbage_manifest_names_the_file_and_what_to_do(collection_path):
    (collection_path / "manifest.json").write_text("{ not json")
    with pytest.raises(CollectionError, match="manifest.json is damaged.*cbir doctor"):
        Collection.open(collection_path)


def test_of_two_concurrent_creators_one_wins_and_the_other_is_told(tmp_path):
    path, start = tmp_path / "c", threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def create(pooling: str) -> None:
        start.wait()
        try:
            with Collection.open_or_create(path, EncoderSpec(pooling=pooling)) as store:
                outcomes[pooling] = store.encoder_spec.pooling
        except CollectionError as error:
            outcomes[pooling] = error

    threads = [threading.Thread(target=create, args=(pooling,)) for pooling in ("gem", "rmac")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [pooling for pooling, outcome in outcomes.items() if outcome == pooling]
    losers = [outcome for outcome in outcomes.values() if isinstance(outcome, CollectionError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert "different encoder" in str(losers[0])
    assert Collection.open(path).encoder_spec.pooling == winners[0]


def test_an_index_file_from_another_collection_is_rebuilt_from_the_catalog(templates, collection_path):
    for name in ("index-image.faiss", "index-image.json"):
        shutil.copy(templates["b"] / name, collection_path / name)
    assert _first_hit_is_itself(collection_path)
    meta = json.loads((collection_path / "index-image.json").read_text())
    with Collection.open(collection_path) as store:
        assert meta["collection"] == store.catalog.connection.execute(
            "SELECT value FROM collection_record WHERE key = 'id'"
        ).fetchone()[0]


def test_a_garbage_index_metadata_file_is_rebuilt(collection_path):
    (collection_path / "index-image.json").write_text("garbage")
    assert _first_hit_is_itself(collection_path)
    assert json.loads((collection_path / "index-image.json").read_text())["count"] == 4


def test_read_only_opening_searches_without_writing_and_refuses_changes(collection_path, tmp_path):
    (collection_path / "index-image.json").unlink()
    def snapshot() -> dict[str, tuple[int, int]]:
        return {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in collection_path.iterdir() if not f.name.endswith(("-shm", "-wal"))}
    before = snapshot()
    with Collection.open(collection_path, read_only=True) as store:
        ids, vectors = store.vectors()
        assert store.search(vectors[0], k=1)[0].item_id == ids[0]
        with pytest.raises(CollectionError, match="read-only"):
            store.add([tmp_path], workers=0)
        with pytest.raises(CollectionError, match="read-only"):
            store.remove_items([int(ids[0])])
    assert snapshot() == before


def test_stale_temporary_files_are_cleaned_and_fresh_ones_kept(collection_path, tmp_path):
    stale, fresh = collection_path / ".index-image.faiss.abc123.tmp", collection_path / ".manifest.json.def456.tmp"
    for file in (stale, fresh):
        file.write_bytes(b"x" * 1000)
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))
    empty = tmp_path / "nothing"
    empty.mkdir()
    with Collection.open(collection_path) as store:
        store.add([empty], workers=0)
    assert not stale.exists() and fresh.exists()


def test_a_file_deleted_after_it_was_skipped_leaves_the_skipped_list_on_sync(tmp_path, encoder):
    images = tmp_path / "images"
    write_images(images, 2, size=(96, 72))
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with Collection.create(tmp_path / "c") as store:
        assert len(store.add([images], workers=0).skipped) == 1
        (images / "broken.jpg").unlink()
        store.add([images], sync=True, workers=0)
        assert store.catalog.skipped() == {}
        assert store.info()["skipped"] == 0


def test_an_untrained_index_still_answers_searches_exactly(tmp_path, encoder):
    images = tmp_path / "images"
    write_images(images, 3, size=(96, 72))
    with Collection.create(tmp_path / "c", index="IVF16,Flat") as store:
        with pytest.raises(CollectionError, match="needs at least 16 vectors"):
            store.add([images], workers=0)
        ids, vectors = store.vectors()
        assert [store.search(vector, k=1)[0].item_id for vector in vectors] == list(ids)

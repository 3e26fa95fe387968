import os
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image

from cbir.collection.collection import Collection, CollectionError
from cbir.encoders.encoder import EncoderSpec
from tests.conftest import pattern_image, write_images


@pytest.fixture
def collection(tmp_path, image_folder):
    store = Collection.create(tmp_path / "collection")
    store.add([image_folder], workers=0)
    yield store
    store.close()


def test_add_indexes_every_image_recursively(collection, image_folder):
    assert collection.catalog.count_items() == 12
    assert collection.info()["by_kind"] == {"image": 12}


def test_search_finds_the_query_image_first(collection, image_folder):
    query = image_folder / "img_0003.jpg"
    results = collection.search(query, k=5)
    assert results[0].uri == str(query.resolve())
    assert results[0].score == pytest.approx(1.0, abs=1e-4)
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(results, results[1:]))


def test_an_edited_copy_finds_its_original(collection, image_folder):
    original = Image.open(image_folder / "img_0005.jpg")
    edited = original.crop((10, 8, 150, 112)).resize((200, 150))
    assert collection.search(edited, k=1)[0].uri.endswith("img_0005.jpg")


def test_rerun_adds_nothing_and_changed_files_are_replaced(collection, image_folder):
    again = collection.add([image_folder], workers=0)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 12)
    pattern_image(999).save(image_folder / "img_0002.jpg")
    os.utime(image_folder / "img_0002.jpg", (time.time() + 5, time.time() + 5))
    changed = collection.add([image_folder], workers=0)
    assert (changed.added, changed.updated) == (0, 1)
    assert collection.catalog.count_items() == 12
    assert collection.search(pattern_image(999), k=1)[0].uri.endswith("img_0002.jpg")


def test_touched_but_identical_file_is_not_re_encoded(collection, image_folder):
    os.utime(image_folder / "img_0001.jpg", (time.time() + 5, time.time() + 5))
    report = collection.add([image_folder], workers=0)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 12)


def test_sync_drops_deleted_files(collection, image_folder):
    (image_folder / "img_0000.jpg").unlink()
    (image_folder / "nested" / "img_0100.jpg").unlink()
    without_sync = collection.add([image_folder], workers=0)
    assert without_sync.removed == 0 and collection.catalog.count_items() == 12
    report = collection.add([image_folder], sync=True, workers=0)
    assert report.removed == 2
    assert collection.catalog.count_items() == 10
    assert len(collection.index()) == 10
    assert all("img_0000" not in r.uri for r in collection.search(image_folder / "img_0001.jpg", k=20))


def test_reopening_keeps_everything(collection, tmp_path, image_folder):
    collection.close()
    with Collection.open(tmp_path / "collection") as reopened:
        assert len(reopened.index()) == 12
        assert reopened.search(image_folder / "img_0004.jpg", k=1)[0].uri.endswith("img_0004.jpg")


def test_a_different_encoder_is_refused(collection, tmp_path):
    collection.close()
    with pytest.raises(CollectionError, match="pooling: collection 'rmac' vs requested 'mac'"):
        Collection.open(tmp_path / "collection", EncoderSpec(pooling="mac"))
    Collection.open(tmp_path / "collection", EncoderSpec()).close()


def test_opening_a_missing_collection_says_how_to_create_one(tmp_path):
    with pytest.raises(CollectionError, match="cbir index"):
        Collection.open(tmp_path / "nothing")


def test_broken_files_are_skipped_and_reported(tmp_path):
    folder = tmp_path / "mixed"
    write_images(folder, 3)
    good = (folder / "img_0000.jpg").read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.png").write_bytes(b"not an image at all")
    Image.new("1", (12000, 12000)).save(folder / "bomb.png")
    pattern_image(7).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.arange(4096, dtype=np.uint16).reshape(64, 64) * 16).save(folder / "deep.png")
    pattern_image(8).convert("RGBA").save(folder / "alpha.png")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    with Collection.create(tmp_path / "c") as store:
        report = store.add([folder], workers=0)
        reasons = dict((os.path.basename(uri), reason) for uri, reason in report.skipped)
        assert set(reasons) == {"empty.jpg", "truncated.jpg", "notes.png", "bomb.png"}
        assert "empty" in reasons["empty.jpg"] and "truncated" in reasons["truncated.jpg"]
        assert "not a recognised" in reasons["notes.png"] and "exceeds the limit" in reasons["bomb.png"]
        assert report.added == 6 and store.catalog.count_items() == 6
        rerun = store.add([folder], workers=0)
        assert rerun.added == 0 and rerun.previously_skipped == 4
        assert store.info()["skipped"] == 4


def test_hnsw_index_by_factory_string(tmp_path, image_folder):
    with Collection.create(tmp_path / "hnsw", index="HNSW16") as store:
        store.add([image_folder], workers=0)
        assert store.search(image_folder / "img_0006.jpg", k=1)[0].uri.endswith("img_0006.jpg")
        (image_folder / "img_0006.jpg").unlink()
        store.add([image_folder], sync=True, workers=0)
        assert len(store.index()) == 11


def test_ivf_index_needs_enough_vectors(tmp_path, image_folder):
    with Collection.create(tmp_path / "ivf", index="IVF64,Flat") as store:
        with pytest.raises(CollectionError, match="needs at least 64 vectors"):
            store.add([image_folder], workers=0)
        assert store.catalog.count_items() == 12


def test_bad_factory_string_is_refused(tmp_path):
    with pytest.raises(ValueError, match="FAISS cannot build"):
        Collection.create(tmp_path / "bad", index="NotAnIndex")


def test_filters_by_kind_and_label(collection, image_folder):
    from cbir.collection.catalog import Item

    with collection.catalog.transaction():
        vector = collection.encode(image_folder / "img_0001.jpg")
        item_id = collection.catalog.insert_item(Item("region", "x.jpg", vector, labels=["cat"]), "image", None)
    collection.index().add(np.array([item_id]), collection._transform("image", vector[None]))
    only_regions = collection.search(image_folder / "img_0001.jpg", k=5, kinds=["region"])
    assert [r.item_id for r in only_regions] == [item_id]
    assert only_regions[0].labels == ["cat"]
    assert collection.search(image_folder / "img_0001.jpg", k=5, label="dog") == []
    images = collection.search(image_folder / "img_0001.jpg", k=20, kinds=["image"])
    assert len(images) == 12 and all(r.kind == "image" for r in images)


def test_whitening_learned_and_applied(collection, tmp_path, image_folder):
    whitening = collection.learn_whitening(dim=8)
    assert whitening.dim == 8 and collection.index().dim == 8
    assert collection.search(image_folder / "img_0002.jpg", k=1)[0].uri.endswith("img_0002.jpg")
    collection.close()
    with Collection.open(tmp_path / "collection") as reopened:
        assert reopened.index().dim == 8
        reopened.remove_whitening()
        assert reopened.index().dim == 1280


def test_index_file_deleted_is_rebuilt_from_the_catalog(collection, tmp_path, image_folder):
    collection.close()
    (tmp_path / "collection" / "index-image.faiss").unlink()
    with Collection.open(tmp_path / "collection") as reopened:
        assert len(reopened.index()) == 12
        assert reopened.search(image_folder / "img_0007.jpg", k=1)[0].uri.endswith("img_0007.jpg")


def test_catalog_rows_are_typed_items(collection):
    rows = sqlite3.connect(collection.path / "catalog.sqlite").execute(
        "SELECT kind, uri, content_hash, labels, metadata FROM items LIMIT 1"
    ).fetchall()
    kind, uri, content_hash, labels, metadata = rows[0]
    assert kind == "image" and uri.endswith(".jpg") and len(content_hash) == 40
    assert labels == "[]" and '"width": 160' in metadata


def test_search_by_item_id_and_ids_are_never_reused(collection, image_folder):
    first = collection.search(image_folder / "img_0006.jpg", k=1)[0]
    assert collection.search(first.item_id, k=1)[0].item_id == first.item_id
    highest = int(collection.catalog.item_ids("image").max())
    collection.remove_items([highest])
    pattern_image(4242).save(image_folder / "new.jpg")
    collection.add([image_folder], workers=0)
    assert int(collection.catalog.item_ids("image").max()) > highest

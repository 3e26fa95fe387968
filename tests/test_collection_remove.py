"""Collection.remove_items: items leave the catalog and the index, and their sources are forgotten."""

from __future__ import annotations

from cbir.collection.collection import Collection
from tests.conftest import write_images


def test_remove_items_by_id(tmp_path):
    paths = write_images(tmp_path / "images", 5)
    with Collection.create(tmp_path / "collection") as collection:
        collection.add([tmp_path / "images"])
        target = collection.search(paths[2], k=1)[0]
        assert target.uri == str(paths[2].resolve())
        assert collection.catalog.item_space(target.item_id) == "image"
        assert collection.catalog.item_ids_with_uri(target.uri) == [target.item_id]

        assert collection.remove_items([target.item_id, 987654]) == [target.item_id]
        assert collection.catalog.item_space(target.item_id) is None
        assert collection.catalog.item_ids_with_uri(target.uri) == []
        assert collection.info()["items"] == 4
        assert len(collection.index()) == 4
        assert target.item_id not in [hit.item_id for hit in collection.search(paths[2], k=10)]
        assert collection.remove_items([]) == []

    with Collection.open(tmp_path / "collection") as reopened:
        assert len(reopened.index()) == 4
        assert target.item_id not in [hit.item_id for hit in reopened.search(paths[2], k=10)]
        report = reopened.add([tmp_path / "images"])
        assert (report.added, report.unchanged) == (1, 4), "a removed file's source is forgotten, so it comes back"
        assert reopened.search(paths[2], k=1)[0].uri == target.uri

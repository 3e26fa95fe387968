"""A collection written in the first on-disk format (tests/fixtures/collection-format1) opens with
today's code, is migrated in place and loses nothing: items, ids, sources, skipped files and search
results stay as that code left them."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from cbir.collection.catalog import SCHEMA_VERSION, Catalog, CatalogVersionError
from cbir.collection.collection import Collection
from cbir.collection.manifest import FORMAT
from cbir.core.hashing import content_hash
from tests.conftest import write_images

FIXTURE = Path(__file__).parent / "fixtures" / "collection-format1"
OLD_ROOT = "/tmp/cbir-fixture"  # where the fixture's files were when it was indexed (its item URIs)


@pytest.fixture
def old_collection(tmp_path) -> Path:
    path = tmp_path / "collection"
    shutil.copytree(FIXTURE / "collection", path)
    return path


def test_the_old_format_is_what_the_fixture_holds() -> None:
    manifest = json.loads((FIXTURE / "collection" / "manifest.json").read_text())
    with closing(sqlite3.connect(f"file:{FIXTURE / 'collection' / 'catalog.sqlite'}?immutable=1", uri=True)) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in connection.execute("PRAGMA table_info(sources)")]
    assert manifest["format"] == 1 and version == 0
    assert columns == ["id", "uri", "pipeline", "content_hash", "size", "mtime", "indexed_at"]


def test_opening_migrates_and_loses_nothing(old_collection) -> None:
    expected = json.loads((FIXTURE / "expected-search.json").read_text())
    with Collection.open(old_collection) as collection:
        assert collection.manifest.format == FORMAT and collection.default_space == "image"
        assert {name: space.pipeline for name, space in collection.manifest.spaces.items()} == {"image": "image", "face": "faces"}
        info = collection.info()
        assert {key: info[key] for key in ("items", "by_kind", "skipped")} == expected["info"]
        assert info["spaces"]["image"]["search_effort"] is None  # Flat: exhaustive, as before
        for space in ("image", "face"):
            ids, vectors = collection.vectors(space)
            assert sorted(int(i) for i in ids) == sorted(int(i) for i in expected[space])
            for item_id, vector in zip(ids, vectors):
                hits = collection.search_vectors(vector[None], k=5, space=space)[0]
                want = expected[space][str(item_id)]
                assert [hit.uri for hit in hits] == [uri for uri, _ in want]
                np.testing.assert_allclose([hit.score for hit in hits], [score for _, score in want], atol=1e-5)
        sources = collection.catalog.sources("image")
        assert len(sources) == 10 and sum(state.indexed for state in sources.values()) == 9
        for uri, state in sources.items():
            local = FIXTURE / Path(uri).relative_to(OLD_ROOT)
            assert state.members[0][0] == uri and state.members[0][1] == local.stat().st_size
            if state.indexed:
                assert state.content_hash == content_hash(local.read_bytes())
        assert collection.catalog.skipped() == {(f"{OLD_ROOT}/images/broken.jpg", "image"): "not a recognised image format"}
    assert json.loads((old_collection / "manifest.json").read_text())["format"] == FORMAT
    with sqlite3.connect(old_collection / "catalog.sqlite") as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'skipped'").fetchall()


def test_a_migrated_collection_takes_new_items_and_opens_again(old_collection, tmp_path) -> None:
    with Collection.open(old_collection) as collection:
        report = collection.add([write_images(tmp_path / "new", 2, start=300)[0].parent], workers=0)
        assert report.added == 2 and collection.catalog.count_items("image") == 11
    with Collection.open(old_collection) as collection:
        assert collection.info()["items"] == 13
        query = tmp_path / "new" / "img_0300.jpg"
        assert collection.search(query, k=1)[0].uri == str(query.resolve())


def test_the_face_space_is_rebuilt_from_its_record(old_collection) -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from cbir.pipelines.faces import FacePipeline

    with Collection.open(old_collection) as collection:
        pipeline = collection.pipeline("face")
        assert isinstance(pipeline, FacePipeline) and pipeline.space_record()[0] == collection.space("face").encoder


def test_a_newer_catalog_is_refused(tmp_path) -> None:
    path = tmp_path / "catalog.sqlite"
    Catalog(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CatalogVersionError, match="upgrade cbir"):
        Catalog(path)

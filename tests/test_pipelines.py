"""The pipelines layer: one decoding dataset for every kind, the same descriptors as the code that
wrote the format-1 fixture collection, and pipelines rebuilt from a space's record."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from cbir.core.hashing import content_hash, members_hash
from cbir.encoders.encoder import EncoderSpec, shared_encoder
from cbir.io.images import load_image
from cbir.pipelines import PIPELINES, Source
from cbir.pipelines.decoding import DecodeError, SourceDataset, batches, decoding_workers
from cbir.pipelines.image import ImagePipeline, extract
from tests.conftest import write_images

FIXTURE = Path(__file__).parent / "fixtures" / "collection-format1"


def fixture_vectors(space: str) -> dict[str, np.ndarray]:
    """The descriptors the format-1 code stored, by file name (read straight from its SQLite file)."""
    with closing(sqlite3.connect(f"file:{FIXTURE / 'collection' / 'catalog.sqlite'}?immutable=1", uri=True)) as connection:
        rows = connection.execute("SELECT uri, vector FROM items WHERE space = ? ORDER BY id", (space,)).fetchall()
    return {Path(uri).name: np.frombuffer(vector, dtype=np.float32) for uri, vector in rows}


def test_pipeline_vectors_equal_single_image_encoding(tmp_path) -> None:
    paths = write_images(tmp_path / "a", 5, size=(160, 120)) + write_images(tmp_path / "b", 4, start=50, size=(90, 200))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    paths.insert(3, tmp_path / "broken.jpg")
    encoder = shared_encoder(EncoderSpec())
    batches_ = list(extract(encoder, paths, batch_size=4, workers=1))
    decoded = [entry for batch in batches_ for entry in batch.decoded]
    assert [entry.index for entry in decoded] == list(range(len(paths)))
    assert decoded[3].value is None and decoded[3].error
    pipeline = np.concatenate([batch.vectors for batch in batches_])
    single = encoder.encode_images([load_image(p, min_side=224) for p in paths if p.name != "broken.jpg"])
    np.testing.assert_allclose(pipeline, single, atol=1e-6)


def test_image_pipeline_gives_the_descriptors_the_previous_code_stored() -> None:
    stored = fixture_vectors("image")
    files = sorted((FIXTURE / "images").rglob("*.jpg"))
    pipeline = ImagePipeline(shared_encoder(EncoderSpec()))
    results = [result for batch in pipeline.run(pipeline.sources(files), [None] * len(files), 4, 0) for result in batch]
    made = {Path(item.uri).name: item for result in results for item in result.items}
    assert sorted(made) == sorted(stored) and len(stored) == 9
    for name, vector in stored.items():
        np.testing.assert_allclose(made[name].vector, vector, atol=1e-6)
    broken = [result for result in results if result.error]
    assert len(broken) == 1 and files[broken[0].index].name == "broken.jpg"


def test_face_pipeline_gives_the_descriptors_the_previous_code_stored() -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    stored = fixture_vectors("face")
    files = sorted((FIXTURE / "faces").glob("*.jpg"))
    pipeline = PIPELINES.create("faces", record={"type": "dlib_resnet_v1", "tta": "flip"})
    results = [result for batch in pipeline.run(pipeline.sources(files), [None] * len(files), 16, 0) for result in batch]
    made = {Path(item.uri).name: item.vector for result in results for item in result.items}
    assert sorted(made) == sorted(stored) == ["astronaut.jpg", "hopper.jpg"]
    for name, vector in stored.items():
        np.testing.assert_allclose(made[name], vector, atol=1e-6)


def test_a_pipeline_is_rebuilt_from_its_space_record() -> None:
    built = ImagePipeline(shared_encoder(EncoderSpec(pooling="gem")))
    record, dim = built.space_record()
    rebuilt = PIPELINES.create("image", record=record)
    assert isinstance(rebuilt, ImagePipeline) and rebuilt.space_record() == (record, dim)
    assert rebuilt.encoder.spec.pooling == "gem"
    with pytest.raises(ValueError, match="unknown pipeline 'slices'.*image, faces"):
        PIPELINES.get("slices")


class _JoinMembers:
    """A decoder of many-file sources, as a series of slices would be: the members' bytes joined."""

    def __call__(self, source: Source, contents: list[bytes]) -> bytes:
        if not all(contents):
            raise DecodeError("an empty member")
        return b"|".join(contents)


def test_the_decoding_dataset_reads_hashes_and_skips_many_file_sources(tmp_path) -> None:
    for name, data in {"a1": b"one", "a2": b"two", "b1": b"three", "c1": b""}.items():
        (tmp_path / name).write_bytes(data)
    series = Source("series:a", (tmp_path / "a1", tmp_path / "a2"))
    single = Source.file(tmp_path / "b1")
    empty = Source("series:c", (tmp_path / "c1",))
    missing = Source("series:d", (tmp_path / "d1",))
    known = [None, content_hash(b"three"), None, None]
    dataset = SourceDataset([series, single, empty, missing], _JoinMembers(), known)
    entries = [entry for batch in batches(dataset, batch_size=2, workers=1) for entry in batch]
    assert [entry.index for entry in entries] == [0, 1, 2, 3]
    assert entries[0].value == b"one|two" and entries[0].content_hash == members_hash([b"one", b"two"])
    assert entries[0].content_hash not in (content_hash(b"onetwo"), members_hash([b"onet", b"wo"]))
    assert entries[1].unchanged and entries[1].value is None
    assert entries[2].error == "an empty member"
    assert entries[3].error.startswith("unreadable") and entries[3].content_hash is None
    assert series.stamp()[1][:2] == (str(tmp_path / "a2"), 3)


def test_one_worker_rule_leaves_the_busy_cores_alone(monkeypatch) -> None:
    monkeypatch.setattr("cbir.pipelines.decoding.available_cores", lambda: 6)
    assert decoding_workers(busy_threads=0) == 4
    assert decoding_workers(busy_threads=4) == 2
    assert decoding_workers(busy_threads=8) == 0

"""Extraction on a local Ray with two encoder actors gives the local path's descriptors and skip report."""

import numpy as np
import pytest

pytest.importorskip("ray")

from cbir.collection.collection import Collection  # noqa: E402
from cbir.pipelines.distributed import RayPipeline  # noqa: E402
from tests.conftest import write_images  # noqa: E402


def _descriptors(collection: Collection) -> dict[str, np.ndarray]:
    ids, vectors = collection.vectors()
    items = collection.catalog.get_items(ids)
    return {items[int(i)].uri.rsplit("/", 1)[-1]: vector for i, vector in zip(ids, vectors)}


@pytest.mark.timeout(300)
def test_ray_actors_give_the_local_descriptors(tmp_path, encoder):
    folder = tmp_path / "images"
    write_images(folder, 10, size=(112, 84))
    (folder / "broken.jpg").write_bytes(b"not an image")
    with Collection.create(tmp_path / "local") as local, Collection.create(tmp_path / "ray") as distributed:
        local_report = local.add([folder], batch_size=4, workers=0)
        done = []
        ray_report = distributed.add(
            [folder], RayPipeline(distributed.pipeline(), "local", actors=2), batch_size=4, progress=lambda step, total: done.append((step, total))
        )
        assert ray_report.added == local_report.added == 10 and ray_report.skipped == local_report.skipped
        assert [uri for uri, _ in ray_report.skipped] == [str(folder / "broken.jpg")]
        assert done[-1] == (11, 11)
        expected, found = _descriptors(local), _descriptors(distributed)
        assert sorted(found) == sorted(expected)
        assert max(float(np.abs(found[name] - expected[name]).max()) for name in expected) < 1e-6
        assert distributed.add([folder], RayPipeline(distributed.pipeline(), "local", actors=2)).unchanged == 10

"""Query pictures of concurrent requests share forward passes, with the descriptors they get alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cbir.server.batching import EncodingQueue, QueueTimeout
from cbir.server.service import CollectionService
from cbir.server.settings import ServerSettings
from tests.server_support import PHOTOS, build_collection, photos


def test_concurrent_queries_share_passes_and_get_their_own_descriptors(tmp_path):
    service = CollectionService(build_collection(tmp_path), ServerSettings(refresh_interval=None))
    try:
        images = [photos()[name].convert("RGB") for name in PHOTOS[:8]]
        alone = [service.encoder.encode_images([image])[0] for image in images]
        start = threading.Barrier(len(images))

        def query(image):
            start.wait()
            return service.encode(image)

        with ThreadPoolExecutor(len(images)) as pool:
            together = list(pool.map(query, images))
        queue = service._queries
        assert queue.encoded == len(images) and queue.passes < len(images)
        for mine, reference in zip(together, alone):
            np.testing.assert_allclose(mine, reference, atol=1e-5)
    finally:
        service.close()


def test_a_picture_waits_no_longer_than_allowed_and_a_failure_reaches_its_whole_batch():
    release, started = threading.Event(), threading.Event()

    def slow_then_failing(images, threads):
        started.set()
        release.wait(10)
        if any(image == "bad" for image in images):
            raise ValueError("cannot encode")
        return np.array([[float(len(image))] for image in images])

    queue = EncodingQueue(slow_then_failing, max_batch=4)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(queue.encode, "first", 10)
        assert started.wait(10)
        waiting = [pool.submit(queue.encode, name, 10) for name in ("bad", "ok")]
        with pytest.raises(QueueTimeout):
            queue.encode("late", 0.2)
        release.set()
        assert first.result(10)[0] == 5.0
        for future in waiting:
            with pytest.raises(ValueError, match="cannot encode"):
                future.result(10)
    assert queue.passes == 2 and queue.encoded == 3
    assert queue.encode("again", 1)[0] == 5.0


def test_passes_side_by_side_share_the_cores():
    seen: list[int] = []
    first_running, release = threading.Event(), threading.Event()

    def record(images, threads):
        seen.append(threads)
        if images[0] == "first":
            first_running.set()
            release.wait(10)
        return np.zeros((len(images), 1))

    queue = EncodingQueue(record, max_batch=4, workers=2, threads=2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(queue.encode, "first", 10)
        assert first_running.wait(10)
        queue.encode("second", 10)  # the other worker runs it while the first pass goes on
        release.set()
        first.result(10)
    queue.encode("alone", 10)
    queue.close()
    assert seen == [2, 1, 2]  # alone: every thread; beside another pass: its share

"""Killing ``cbir index`` at any moment and running it again leaves every image exactly once."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cbir.collection.collection import Collection
from tests.conftest import write_images

IMAGES = 60


def _count(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _start_index(folder: Path, collection: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "cbir.cli", "index", str(folder), "--collection", str(collection), "--batch-size", "4", "--workers", "1", "--json"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def _kill_after(process: subprocess.Popen, database: Path, at_least: int, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        count = _count(database)
        if count >= at_least:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return count
        time.sleep(0.05)
    pytest.fail(f"indexing ended before reaching {at_least} items: {process.stderr.read().decode()[-2000:]}")


@pytest.mark.timeout(600)
def test_kill_during_indexing_then_rerun_is_complete_and_duplicate_free(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, IMAGES, size=(112, 84))
    collection = tmp_path / "collection"
    database = collection / "catalog.sqlite"

    seen_at_kill = []
    for threshold in (8, 28):
        seen_at_kill.append(_kill_after(_start_index(folder, collection), database, threshold))
    assert seen_at_kill[-1] < IMAGES, "the run finished before it could be killed"

    finished = subprocess.run(_start_index(folder, collection).args, capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]

    with Collection.open(collection) as store:
        uris = [row[0] for row in store.catalog.connection.execute("SELECT uri FROM items")]
        assert len(uris) == IMAGES and len(set(uris)) == IMAGES
        assert store.catalog.connection.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == IMAGES
        assert np.array_equal(np.sort(store.index().ids()), store.catalog.item_ids("image"))
        assert store.search(folder / "img_0037.jpg", k=1)[0].uri.endswith("img_0037.jpg")
        report = store.add([folder], workers=0)
        assert (report.added, report.updated, report.unchanged) == (0, 0, IMAGES)

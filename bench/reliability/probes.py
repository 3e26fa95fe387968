"""Measurements run in a process of their own, against whichever code ``PYTHONPATH`` puts first.

``python bench/reliability/probes.py memory COLLECTION`` and ``... waits COLLECTION``
print one JSON line; they use only the API both the current and the earlier
code have, so the trial compares the two in the same run.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CANVAS = 7000
CONCURRENT = 16


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def _png(size: int, colour=(200, 40, 40)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "PNG")
    return buffer.getvalue()


def memory(collection: Path) -> dict:
    """Peak and kept resident memory while CONCURRENT searches upload one CANVAS x CANVAS PNG each."""
    from fastapi.testclient import TestClient

    from cbir.server.app import create_app

    client = TestClient(create_app(collection))
    canvas = _png(CANVAS)
    client.post("/search", files={"image": ("small.png", _png(300), "image/png")}, data={"k": 1})
    before = _rss_mb("VmRSS")
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb("VmRSS"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        statuses = list(pool.map(
            lambda _: client.post("/search", files={"image": ("canvas.png", canvas, "image/png")}, data={"k": 1}).status_code,
            range(CONCURRENT),
        ))
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    done.set()
    sampler.join()
    return {
        "canvas": f"{CANVAS}x{CANVAS} PNG, {len(canvas) / 1024:.0f} KiB", "concurrent": CONCURRENT,
        "statuses": sorted(set(statuses)), "rss_before_mb": round(before), "rss_peak_mb": round(peak[0]),
        "rss_after_mb": round(_rss_mb("VmRSS")), "peak_above_before_mb": round(peak[0] - before),
        "kept_above_before_mb": round(_rss_mb("VmRSS") - before), "seconds": round(seconds, 1),
    }


def waits(collection: Path) -> dict:
    """8 uploads while another process holds the write lock, and searches meanwhile: how long each waited."""
    from fastapi.testclient import TestClient
    from filelock import FileLock

    from cbir.server.app import create_app
    from cbir.server.settings import ServerSettings

    settings = ServerSettings(refresh_interval=None)
    client = TestClient(create_app(collection, token="t", settings=settings))
    first = client.post("/search", files={"image": ("q.png", _png(200), "image/png")}, data={"k": 1}).json()
    item_id = first["results"][0]["item_id"]

    def upload(index: int) -> tuple[int, float]:
        started = time.perf_counter()
        response = client.post(
            "/items", files={"image": (f"u{index}.png", _png(60, (index * 20, 90, 200)), "image/png")},
            headers={"Authorization": "Bearer t"},
        )
        return response.status_code, time.perf_counter() - started

    def search(_: int) -> tuple[int, float]:
        started = time.perf_counter()
        response = client.post("/search", data={"item_id": item_id, "k": 3})
        return response.status_code, time.perf_counter() - started

    with FileLock(str(collection / ".write.lock")), ThreadPoolExecutor(16) as pool:
        uploads = pool.map(upload, range(8))
        time.sleep(0.5)
        searches = list(pool.map(search, range(8)))
        uploads = list(uploads)
    return {
        "write_wait_setting_s": settings.write_wait,
        "upload_statuses": sorted({status for status, _ in uploads}),
        "upload_wait_s": sorted(round(seconds, 1) for _, seconds in uploads),
        "search_statuses": sorted({status for status, _ in searches}),
        "search_wait_max_s": round(max(seconds for _, seconds in searches), 2),
    }


if __name__ == "__main__":
    probe = {"memory": memory, "waits": waits}[sys.argv[1]]
    print(json.dumps(probe(Path(sys.argv[2]))))

"""Many searches at once, while images are added and removed, against uvicorn on a loopback port."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from cbir.server.app import create_app  # noqa: E402
from cbir.server.settings import ServerSettings  # noqa: E402
from tests.server_support import build_collection, free_port, image_bytes, query_jpeg  # noqa: E402

TOKEN = "concurrency"
QUERIES = ("cat", "astronaut", "rocket")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    collection = build_collection(tmp_path_factory.mktemp("concurrency"))
    app = create_app(collection, token=TOKEN, settings=ServerSettings(refresh_interval=None))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_searches_stay_correct_while_the_collection_changes(base_url):
    queries = {name: query_jpeg(name, seed=11) for name in QUERIES}
    uploads = [image_bytes((48, 36), "PNG", colour=(40 * i, 255 - 40 * i, 90)) for i in range(4)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    stop = threading.Event()

    def reader(number: int) -> list[str]:
        problems = []
        with httpx.Client(base_url=base_url, timeout=120) as client:
            turn = 0
            while not stop.is_set() or turn < 2:
                name = QUERIES[(number + turn) % len(QUERIES)]
                by_image = client.post("/search", files={"image": (f"{name}.jpg", queries[name])}, data={"k": 5})
                if by_image.status_code != 200:
                    problems.append(f"{name}: {by_image.status_code} {by_image.text}")
                    continue
                top = by_image.json()["results"][0]
                if Path(top["uri"]).name != f"{name}.jpg":
                    problems.append(f"{name}: top result {top['uri']}")
                by_item = client.post("/search", data={"item_id": top["item_id"], "k": 3})
                if by_item.status_code != 200 or by_item.json()["results"][0]["item_id"] != top["item_id"]:
                    problems.append(f"item {top['item_id']}: {by_item.status_code} {by_item.text[:200]}")
                turn += 1
        return problems

    def writer() -> list[int]:
        added = []
        with httpx.Client(base_url=base_url, timeout=120, headers=headers) as client:
            for number, data in enumerate(uploads):
                response = client.post("/items", files={"image": (f"upload-{number}.png", data)})
                assert response.status_code == 201, response.text
                added.append(response.json()["items"][0]["item_id"])
                if number % 2:
                    assert client.delete(f"/items/{added[-2]}").status_code == 200
        return added

    with ThreadPoolExecutor(max_workers=7) as pool:
        readers = [pool.submit(reader, number) for number in range(6)]
        added = pool.submit(writer).result(timeout=600)
        stop.set()
        problems = [problem for future in readers for problem in future.result(timeout=600)]
    assert problems == []

    with httpx.Client(base_url=base_url, timeout=120) as client:
        assert client.get("/info").json()["items"] == 13 + 2
        for number, data in enumerate(uploads):
            top = client.post("/search", files={"image": ("q.png", data)}, data={"k": 1}).json()["results"][0]
            kept = number % 2 == 1
            assert (top["item_id"] == added[number]) is kept, (number, top)

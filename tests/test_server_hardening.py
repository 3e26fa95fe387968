"""Attacks and overloads that once got through the server: each reproduced, and what must happen instead."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from filelock import FileLock  # noqa: E402

import cbir.server.uploads  # noqa: E402
from cbir.server.app import create_app  # noqa: E402
from cbir.server.settings import ServerSettings  # noqa: E402
from tests.server_support import build_collection, image_bytes, query_jpeg  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def collection_path(tmp_path) -> Path:
    return build_collection(tmp_path)


def _search(client: TestClient, data: bytes, name: str = "q.png", **fields):
    return client.post("/search", files={"image": (name, data, "image/png")}, data=fields)


def test_a_symlink_swapped_over_an_indexed_file_is_not_served(collection_path, tmp_path):
    client = TestClient(create_app(collection_path, settings=ServerSettings(refresh_interval=None)))
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:do not serve me\n")
    hits = _search(client, query_jpeg("cat"), k=20).json()["results"]
    image = next(hit for hit in hits if hit["kind"] == "image" and hit["uri"].endswith("cat.jpg"))
    region = next(hit for hit in hits if hit["kind"] == "region" and hit["uri"].endswith("cat.jpg"))
    assert client.get(f"/items/{image['item_id']}/file").status_code == 200
    assert client.get(f"/items/{region['item_id']}/thumbnail").status_code == 200
    original = Path(image["uri"]).read_bytes()  # the photo is shared with other tests' collections: put it back
    os.unlink(image["uri"])
    os.symlink(secret, image["uri"])
    try:
        for item in (image, region):
            for part in ("file", "thumbnail?size=64"):
                response = client.get(f"/items/{item['item_id']}/{part}")
                assert response.status_code == 409, (part, response.text)
                assert b"do not serve me" not in response.content and "changed since it was indexed" in response.json()["detail"]
    finally:
        os.unlink(image["uri"])
        Path(image["uri"]).write_bytes(original)


def test_a_read_only_collection_is_searched_and_refuses_changes(collection_path, monkeypatch):
    monkeypatch.setattr("cbir.collection.collection.is_writable", lambda folder: False)
    def contents() -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in collection_path.iterdir() if not path.name.endswith(("-wal", "-shm"))}

    before = contents()
    client = TestClient(create_app(collection_path, token=TOKEN, settings=ServerSettings(refresh_interval=None)))
    hits = _search(client, query_jpeg("coffee"), k=3).json()["results"]
    assert Path(hits[0]["uri"]).name == "coffee.jpg"
    added = client.post("/items", files={"image": ("red.png", image_bytes((40, 30)), "image/png")}, headers=AUTH)
    assert added.status_code == 403 and "read-only" in added.json()["detail"]
    assert client.delete(f"/items/{hits[0]['item_id']}", headers=AUTH).status_code == 403
    assert contents() == before


def test_decoding_of_big_canvases_is_bounded(collection_path, monkeypatch):
    settings = ServerSettings(refresh_interval=None, max_decodes=2)
    client = TestClient(create_app(collection_path, settings=settings))
    decoding, most = 0, 0
    guard = threading.Lock()
    real_load = cbir.server.uploads.load_image

    def counting_load(*args, **kwargs):
        nonlocal decoding, most
        with guard:
            decoding += 1
            most = max(most, decoding)
        try:
            time.sleep(0.2)
            return real_load(*args, **kwargs)
        finally:
            with guard:
                decoding -= 1

    monkeypatch.setattr(cbir.server.uploads, "load_image", counting_load)
    canvas = image_bytes((3000, 3000), "PNG")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _search(client, canvas, k=1).status_code, range(8)))
    assert statuses == [200] * 8
    assert most == 2


def test_waits_for_the_write_lock_are_bounded_and_searches_go_on(collection_path):
    settings = ServerSettings(refresh_interval=None, write_wait=1.5, max_writers=2)
    client = TestClient(create_app(collection_path, token=TOKEN, settings=settings))
    item_id = _search(client, query_jpeg("cat"), k=1).json()["results"][0]["item_id"]

    def upload(index: int) -> tuple[int, float]:
        started = time.perf_counter()
        data = image_bytes((48, 40), "PNG", colour=(index * 20, 90, 200))
        response = client.post("/items", files={"image": (f"u{index}.png", data, "image/png")}, headers=AUTH)
        return response.status_code, time.perf_counter() - started

    def search_by_item(_: int) -> tuple[int, float]:
        started = time.perf_counter()
        response = client.post("/search", data={"item_id": item_id, "k": 3})
        return response.status_code, time.perf_counter() - started

    with FileLock(str(collection_path / ".write.lock")):  # as another process indexing would hold it
        with ThreadPoolExecutor(12) as pool:
            uploads = pool.map(upload, range(8))
            time.sleep(0.3)
            searches = list(pool.map(search_by_item, range(8)))
            uploads = list(uploads)
    assert [status for status, _ in uploads] == [503] * 8
    assert max(seconds for _, seconds in uploads) < settings.write_wait + 6
    assert [status for status, _ in searches] == [200] * 8
    assert max(seconds for _, seconds in searches) < 3


def test_requests_for_other_host_names_are_refused(collection_path):
    settings = ServerSettings(refresh_interval=None, allowed_hosts=("127.0.0.1", "localhost", "::1"))
    client = TestClient(create_app(collection_path, settings=settings), base_url="http://localhost:8000")
    assert client.get("/info").status_code == 200
    assert client.get("/info", headers={"Host": "[::1]:8000"}).status_code == 200
    rebound = client.get("/info", headers={"Host": "attacker.example:8000"})
    assert rebound.status_code == 421 and "attacker.example" in rebound.json()["detail"]


def test_serving_on_loopback_answers_only_to_local_names():
    from cbir.commands.serve import allowed_hosts

    assert set(allowed_hosts("127.0.0.1", [])) == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("0.0.0.0", ["search.lan"]) == ("search.lan",)
    assert allowed_hosts("0.0.0.0", []) is None


def test_uploads_left_by_a_killed_server_are_removed_at_start(collection_path):
    uploads = collection_path / "uploads"
    orphan, fresh = uploads / "00aa" / "left.png", uploads / "00bb" / "in-flight.png"
    for file in (orphan, fresh):
        file.parent.mkdir(parents=True)
        file.write_bytes(image_bytes((20, 20)))
    hours_ago = time.time() - 7200
    os.utime(orphan, (hours_ago, hours_ago))
    TestClient(create_app(collection_path, token=TOKEN, settings=ServerSettings(refresh_interval=None)))
    assert not orphan.exists() and not orphan.parent.exists()
    assert fresh.exists()

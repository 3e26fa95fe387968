"""The REST API through FastAPI's test client, on a real collection with a real model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cbir.cli import app as cli  # noqa: E402
from cbir.collection.collection import Collection  # noqa: E402
from cbir.server.app import create_app  # noqa: E402
from cbir.server.settings import ServerSettings  # noqa: E402
from tests.server_support import build_collection, image_bytes, query_jpeg  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL_LIMITS = ServerSettings(max_upload_bytes=256 * 1024, max_pixels=4_000_000, max_k=50, refresh_interval=None)


@pytest.fixture(scope="module")
def collection_path(tmp_path_factory) -> Path:
    return build_collection(tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def client(collection_path) -> TestClient:
    """A read-only server (no token) with small limits."""
    return TestClient(create_app(collection_path, settings=SMALL_LIMITS))


@pytest.fixture
def own_collection(tmp_path) -> Path:
    """A copy of the collection that a test may change."""
    return build_collection(tmp_path)


def search(client: TestClient, data: bytes | None = None, name: str = "query.jpg", **fields):
    files = {"image": (name, data, "image/jpeg")} if data is not None else None
    return client.post("/search", files=files, data=fields)


def names(response) -> list[str]:
    return [Path(hit["uri"]).name for hit in response.json()["results"]]


# searching ---------------------------------------------------------------------------


def test_search_by_upload_finds_the_original_first(client):
    response = search(client, query_jpeg("cat"), name="cat-edited.jpg", k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "cat-edited.jpg"
    assert names(response)[0] == "cat.jpg"
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert [hit["rank"] for hit in body["results"]] == [1, 2, 3, 4, 5]
    assert "encode;dur=" in response.headers["server-timing"]


def test_search_json_is_the_same_as_the_command_line(client, collection_path, tmp_path):
    query = tmp_path / "coffee-edited.jpg"
    query.write_bytes(query_jpeg("coffee", seed=5))
    command = ["search", str(query), "--collection", str(collection_path), "-k", "6", "--json"]
    run = CliRunner().invoke(cli, command)
    assert run.exit_code == 0, run.output
    printed = json.loads(run.stdout)
    served = search(client, query.read_bytes(), name=query.name, k=6).json()
    assert served["results"] == printed["results"]
    assert any("box" in hit and "labels" in hit for hit in served["results"]), "regions carry box and labels"


def test_search_by_item_returns_the_item_first(client):
    first = search(client, query_jpeg("astronaut"), k=1).json()["results"][0]
    response = search(client, item_id=first["item_id"], k=4)
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == f"item:{first['item_id']}"
    assert body["results"][0]["item_id"] == first["item_id"]
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_kind_and_label_filters(client):
    regions = search(client, query_jpeg("cat"), k=10, kind="region").json()["results"]
    assert {hit["kind"] for hit in regions} == {"region"} and len(regions) == 3
    assert regions[0]["labels"] == ["cat", "face"] and len(regions[0]["box"]) == 4
    faces = search(client, query_jpeg("cat"), k=10, label="face").json()["results"]
    assert sorted(Path(hit["uri"]).name for hit in faces) == ["astronaut.jpg", "cat.jpg"]
    images = search(client, query_jpeg("cat"), k=50, kind="image").json()["results"]
    assert {hit["kind"] for hit in images} == {"image"} and len(images) == 10
    assert search(client, query_jpeg("cat"), label="no such label").json()["results"] == []


# items, thumbnails, files, info -------------------------------------------------------


def test_item_details_thumbnail_and_file(client):
    hit = search(client, query_jpeg("cat"), k=5, kind="region").json()["results"][0]
    details = client.get(f"/items/{hit['item_id']}").json()
    assert details["name"] == "cat.jpg" and details["kind"] == "region"
    assert details["box"] == hit["box"] and details["image_size"] == [451, 300]

    thumbnail = client.get(details["thumbnail"], params={"size": 128})
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (128, 85)
    again = client.get(details["thumbnail"], params={"size": 128}, headers={"If-None-Match": thumbnail.headers["etag"]})
    assert again.status_code == 304

    original = client.get(details["file"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.content == Path(details["uri"]).read_bytes()


def test_info_describes_the_collection_and_limits(client):
    info = client.get("/info").json()
    assert info["items"] == 13 and info["by_kind"] == {"image": 10, "region": 3}
    assert info["encoder"]["backbone"] == "efficientnet_lite0"
    assert info["server"] == {"writable": False, "max_upload_bytes": 256 * 1024, "max_pixels": 4_000_000, "max_k": 50}


def test_page_and_openapi_schema_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="results"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css", "/static/icon.svg"):
        assert client.get(asset).status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/search", "/items", "/items/{item_id}", "/items/{item_id}/thumbnail", "/items/{item_id}/file", "/info"} <= set(
        schema["paths"]
    )
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# bad requests -------------------------------------------------------------------------


def assert_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["detail"]
    assert isinstance(message, str) and message
    for word in words:
        assert word in message, message


def test_oversized_uploads_are_refused(client):
    big = image_bytes((600, 600), "BMP")  # about 1 MB, over the 256 KiB limit
    assert_refused(search(client, big, name="big.bmp"), 413, "limit of 0.25 MiB")

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.bmp\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 16384

    streamed = client.post("/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert_refused(streamed, 413, "limit of 0.25 MiB")


def test_too_many_pixels_are_refused_before_decoding(client):
    huge = image_bytes((2500, 2000), "PNG")  # small file, 5 million pixels
    assert len(huge) < 256 * 1024
    assert_refused(search(client, huge, name="huge.png"), 413, "2500x2000", "4,000,000")


def test_files_that_are_not_images_are_refused(client):
    assert_refused(search(client, b"%PDF-1.4 not an image", name="paper.jpg"), 415, "not an image")
    assert_refused(search(client, b"", name="empty.jpg"), 422, "empty")
    truncated = query_jpeg("cat")[:1500]
    assert_refused(search(client, truncated, name="cut.jpg"), 422, "could not be decoded")


def test_malformed_searches_are_refused(client):
    assert_refused(search(client), 422, "either")
    assert_refused(search(client, query_jpeg(), item_id=1), 422, "either")
    assert_refused(search(client, item_id=1, k=0), 422, "k")
    assert_refused(search(client, item_id=1, k=51), 422, "at most 50")
    assert_refused(search(client, item_id="../../etc/passwd"), 422, "item_id")
    assert_refused(client.post("/search", files={"image": ("x", b"")}, data={"k": "many"}), 422, "k")


def test_unknown_ids_are_404(client):
    for path in ("/items/999999", "/items/999999/thumbnail", "/items/999999/file"):
        assert_refused(client.get(path), 404, "no item 999999")
    assert_refused(search(client, item_id=999999), 404, "no item 999999")


@pytest.mark.parametrize(
    "path",
    [
        "/items/..%2F..%2F..%2Fetc%2Fpasswd",
        "/items/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/items/%2Fetc%2Fpasswd/file",
        "/items/1%2F..%2F..%2Fmanifest.json/file",
        "/items/-1/file",
        "/items/0/thumbnail",
        "/items/1e3/file",
        "/items/1;rm/file",
        "/items/99999999999999999999999/file",
        "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/..%2Fserver%2Fapp.py",
        "/catalog.sqlite",
        "/manifest.json",
    ],
)
def test_path_like_requests_never_reach_the_file_system(client, path):
    response = client.get(path)
    assert response.status_code in (404, 422), (path, response.status_code)
    assert response.json()["detail"]
    assert b"root:" not in response.content and b"import" not in response.content


def test_unknown_routes_and_methods_answer_json(client):
    assert_refused(client.get("/nothing/here"), 404, "/openapi.json")
    assert_refused(client.put("/search"), 405, "PUT")


def test_cors_is_off_unless_asked_for(client, collection_path):
    origin = {"Origin": "http://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/info", headers=origin).headers
    settings = ServerSettings(refresh_interval=None, cors_origins=("http://elsewhere.example",))
    allowed = TestClient(create_app(collection_path, settings=settings)).get("/info", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "http://elsewhere.example"


# writing ------------------------------------------------------------------------------


def test_writes_are_disabled_without_a_token(client):
    assert_refused(client.post("/items", files={"image": ("a.jpg", query_jpeg(), "image/jpeg")}), 403, "--token")
    assert_refused(client.delete("/items/1", headers=AUTH), 403, "read-only")


@pytest.fixture
def writable(own_collection) -> TestClient:
    settings = ServerSettings(max_upload_bytes=256 * 1024, refresh_interval=None)
    return TestClient(create_app(own_collection, token=TOKEN, settings=settings))


def test_upload_index_search_and_delete(writable):
    upload = image_bytes((64, 48), "PNG", colour=(10, 200, 30))
    files = {"image": ("../../evil name.png", upload, "image/png")}
    assert_refused(writable.post("/items", files=files), 401, "Authorization")
    assert_refused(writable.post("/items", files=files, headers={"Authorization": "Bearer wrong"}), 401, "not the one")
    assert_refused(writable.post("/items", files=files, headers={"Authorization": f"Basic {TOKEN}"}), 401)

    added = writable.post("/items", files=files, headers=AUTH)
    assert added.status_code == 201, added.text
    item = added.json()["items"][0]
    stored = Path(item["uri"])
    uploads = Path(writable.app.state.service.uploads)
    assert stored.parent.parent == uploads and stored.name == "evil-name.png"
    assert stored.read_bytes() == upload
    assert writable.get("/info").json()["items"] == 14

    hit = search(writable, upload, name="green.png", k=1).json()["results"][0]
    assert hit["item_id"] == item["item_id"] and hit["score"] == pytest.approx(1.0, abs=1e-4)

    again = writable.post("/items", files=files, headers=AUTH)
    assert again.status_code == 200 and again.json()["added"] == 0
    assert again.json()["items"][0]["item_id"] == item["item_id"]

    assert_refused(writable.post("/items", files={"image": ("x.png", b"not an image")}, headers=AUTH), 415)
    assert_refused(writable.delete(f"/items/{item['item_id']}"), 401)
    removed = writable.delete(f"/items/{item['item_id']}", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["removed"] == item["item_id"]
    assert not stored.exists() and not stored.parent.exists()
    assert writable.get("/info").json()["items"] == 13
    assert item["item_id"] not in [hit["item_id"] for hit in search(writable, upload, k=13).json()["results"]]
    assert_refused(writable.delete(f"/items/{item['item_id']}", headers=AUTH), 404)


def test_delete_of_an_indexed_photo_keeps_its_file(writable):
    hit = search(writable, query_jpeg("camera"), k=1, kind="image").json()["results"][0]
    assert Path(hit["uri"]).name == "camera.jpg"
    assert writable.delete(f"/items/{hit['item_id']}", headers=AUTH).status_code == 200
    assert Path(hit["uri"]).exists()
    assert "camera.jpg" not in names(search(writable, query_jpeg("camera"), k=20))


def test_changes_by_another_process_are_picked_up(own_collection, tmp_path):
    path = own_collection
    client = TestClient(create_app(path, settings=ServerSettings(refresh_interval=0)))
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "green.png").write_bytes(image_bytes((80, 60), "PNG", colour=(10, 200, 30)))
    assert "green.png" not in names(search(client, (extra / "green.png").read_bytes(), k=20))
    with Collection.open(path) as other:  # its own SQLite connection, as `cbir index` would have
        other.add([extra])
    assert names(search(client, (extra / "green.png").read_bytes(), k=1)) == ["green.png"]
    assert client.get("/info").json()["items"] == 14


def test_item_whose_file_is_gone_is_404(writable):
    added = writable.post("/items", files={"image": ("red.png", image_bytes((40, 30)), "image/png")}, headers=AUTH)
    item = added.json()["items"][0]
    Path(item["uri"]).unlink()
    assert_refused(writable.get(item["file"]), 404, "no longer at")
    assert_refused(writable.get(item["thumbnail"]), 404, "no longer at")


def test_serve_command_explains_a_missing_collection(tmp_path):
    run = CliRunner().invoke(cli, ["serve", "--collection", str(tmp_path / "nothing")])
    assert run.exit_code == 2
    assert "no collection at" in run.output

"""The video endpoints through FastAPI's test client, on a collection of generated videos: range requests
on item files, a photo's moments with frame strips, a clip's videos with aligned segments."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("av")
pytest.importorskip("scenedetect")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cbir.cli import app as cli  # noqa: E402
from cbir.server.app import create_app  # noqa: E402
from cbir.server.settings import ServerSettings  # noqa: E402
from tests.video_support import scene_frame, write_scenes  # noqa: E402


def video_collection(root):
    """Photos and videos indexed with ``cbir index``: scenes.webm (VP9, cuts at 2 and 4 s) and other.mp4."""
    folder = root / "library"
    folder.mkdir()
    write_scenes(folder / "scenes.webm", [11, 12, 13], codec="libvpx-vp9")
    write_scenes(folder / "other.mp4", [21, 22])
    scene_frame(40, 3).save(folder / "photo.jpg")
    result = CliRunner().invoke(cli, ["index", str(folder), "--collection", str(root / "collection")])
    assert result.exit_code == 0, result.output
    return folder, root / "collection"


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-server")
    folder, collection = video_collection(root)
    client = TestClient(create_app(collection, settings=ServerSettings(refresh_interval=None)))
    return folder, client


def moments(client, image: Image.Image, k: int = 5) -> dict:
    response = client.post("/video/moments", files={"image": ("query.jpg", jpeg(image), "image/jpeg")}, data={"k": k})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_photo_gets_its_moment_with_a_strip_of_frames(served):
    folder, client = served
    found = moments(client, scene_frame(12, 8))  # 2.8 s into scenes.webm
    best = found["moments"][0]
    assert best["uri"] == str(folder / "scenes.webm")
    assert 2.0 <= best["t_start"] <= 2.8 <= best["t_end"] <= 4.0
    assert best["file"] == f"/items/{best['item_id']}/file" and best["strip"]
    frame = client.get(best["strip"][0])
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    shown = np.asarray(Image.open(io.BytesIO(frame.content)).convert("RGB").resize((128, 96)), dtype=float)
    distance = {seed: np.abs(shown - np.asarray(scene_frame(seed, 0), dtype=float)).mean() for seed in (11, 12, 13)}
    assert min(distance, key=distance.get) == 12  # the strip shows the matching scene
    thumbnail = client.get(f"/items/{best['item_id']}/thumbnail")  # a frame's thumbnail is the frame
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.history and "/frame?t=" in str(thumbnail.url)


def test_item_files_answer_range_requests(served):
    folder, client = served
    item = moments(client, scene_frame(12, 8))["moments"][0]["item_id"]
    data = (folder / "scenes.webm").read_bytes()
    whole = client.get(f"/items/{item}/file")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "video/webm"
    part = client.get(f"/items/{item}/file", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}" and part.headers["content-length"] == "200"
    tail = client.get(f"/items/{item}/file", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    rest = client.get(f"/items/{item}/file", headers={"Range": f"bytes={len(data) - 10}-"})
    assert rest.status_code == 206 and rest.content == data[-10:]
    clipped = client.get(f"/items/{item}/file", headers={"Range": f"bytes=0-{len(data) * 2}"})
    assert clipped.status_code == 206 and clipped.content == data
    beyond = client.get(f"/items/{item}/file", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    assert "outside the file" in beyond.json()["detail"]


def test_an_uploaded_clip_finds_its_video_and_segment(served, tmp_path):
    folder, client = served
    clip = write_scenes(tmp_path / "clip.mp4", [12, 13])  # seconds 2-6 of scenes.webm
    response = client.post("/video/clip", files={"clip": ("clip.mp4", clip.read_bytes(), "video/mp4")}, data={"k": 5})
    assert response.status_code == 200, response.text
    found = response.json()
    best = found["results"][0]
    assert best["uri"] == str(folder / "scenes.webm") and best["score"] > found["results"][1]["score"] + 0.05
    assert best["t_start"] == pytest.approx(2.0, abs=0.6) and best["t_end"] == pytest.approx(6.0, abs=0.6)
    assert found["query_duration"] == pytest.approx(4.0, abs=0.11)
    assert client.get(best["strip"][0]).status_code == 200


def test_bad_video_requests_get_clear_refusals(served):
    _, client = served
    junk = client.post("/video/clip", files={"clip": ("clip.mp4", b"not a video at all", "video/mp4")})
    assert junk.status_code == 415 and "not a video" in junk.json()["detail"]
    photo = client.post("/search", files={"image": ("q.jpg", jpeg(scene_frame(40, 3)), "image/jpeg")}, data={"kind": "image"})
    image_item = photo.json()["results"][0]["item_id"]
    frame = client.get(f"/items/{image_item}/frame?t=1")
    assert frame.status_code == 415 and "not a frame" in frame.json()["detail"]

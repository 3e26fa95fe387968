"""End to end: `cbir serve` on a collection of generated videos, driven in headless Chromium: a photo's
moment plays from its start, and an uploaded clip finds its video. The page screenshot goes to
$CBIR_SCREENSHOT_DIR when set.

Needs Debian's chromium at /usr/bin/chromium (``scripts/install-chromium.sh``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("av")
pytest.importorskip("scenedetect")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'cbir[test]')")

from tests.server_support import free_port  # noqa: E402
from tests.test_server_e2e import CHROMIUM, CHROMIUM_ARGS, START_TIMEOUT_S  # noqa: E402  (skips without Chromium)
from tests.test_server_video import video_collection  # noqa: E402
from tests.video_support import scene_frame, write_scenes  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cbir serve` on the video collection, on a free loopback port; yields (base URL, library folder)."""
    root = tmp_path_factory.mktemp("video-e2e")
    folder, collection = video_collection(root)
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key != "CBIR_TOKEN"}
    command = [sys.executable, "-m", "cbir.cli", "serve", "--collection", str(collection), "--port", str(port)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"cbir serve exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                if httpx.get(f"{base}/info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"cbir serve did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield base, folder
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(server[0] + "/")
        page.wait_for_function("() => document.getElementById('collection-info').textContent.includes('items')")
        yield page
        browser.close()


def test_a_photos_moment_plays_from_its_start(page, server, tmp_path):
    _, folder = server
    file_answers: list[int] = []
    page.on("response", lambda response: "/file" in response.url and file_answers.append(response.status))
    photo = tmp_path / "query.jpg"
    scene_frame(12, 8).save(photo, quality=92)  # 2.8 s into scenes.webm, whose second scene runs 2-4 s
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#moments-list .moment .strip img")
    first = page.locator("#moments-list .moment").first
    assert "scenes.webm" in first.text_content()
    start = float(first.get_attribute("data-t-start"))
    assert 2.0 <= start <= 2.8
    assert {kind.text_content() for kind in page.locator("#results .card .kind").all()} == {"image"}
    first.locator(".strip").click()
    page.wait_for_function(
        f"() => {{ const p = document.getElementById('player'); return !p.paused && p.currentTime > {start} + 0.1; }}"
    )
    state = page.evaluate("() => { const p = document.getElementById('player'); "
                          "return {time: p.currentTime, paused: p.paused, src: p.currentSrc}; }")
    assert start <= state["time"] <= start + 2.0 and not state["paused"]
    assert f"/file#t={start:.2f}," in state["src"]
    assert 206 in file_answers  # the player fetched the video in ranges
    assert page.locator("#moments-list .moment.playing").count() == 1
    folder = Path(os.environ.get("CBIR_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "server-video.png"))


def test_an_uploaded_clip_lists_the_video_that_holds_it(page, server, tmp_path):
    clip = write_scenes(tmp_path / "clip.mp4", [12, 13])
    page.set_input_files("#file-input", str(clip))
    page.wait_for_selector("#moments-list .moment")
    assert "Videos holding clip.mp4" in page.text_content("#moments-title")
    assert "scenes.webm" in page.locator("#moments-list .moment").first.text_content()

"""End to end: `cbir serve` on a collection of generated videos, driven in headless Chromium: a photo's
moment plays from its start, and an uploaded clip finds its video. The page screenshot goes to
$CBIR_SCREENSHOT_DIR when set.

Needs Debian's chromium at /usr/bin/chromium (``scripts/install-chromium.sh``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("scenedetect")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'cbir[test]')")

from cbir.server.address import ADDRESS_FILE  # noqa: E402
from tests.server_support import serving  # noqa: E402
from tests.test_server_e2e import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (skips without Chromium)
from tests.test_server_video import video_collection  # noqa: E402
from tests.video_support import scene_frame, write_scenes  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cbir serve` on the video collection, on a free loopback port; yields (base URL, library folder)."""
    root = tmp_path_factory.mktemp("video-e2e")
    folder, collection = video_collection(root)
    with serving(collection) as (base, _):
        yield base, folder


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


def test_a_photo_search_on_videos_is_not_sent_to_the_server(server, tmp_path):
    """The server answers searches, not moments: `cbir search` makes a photo's moments in-process."""
    from cbir.commands.remote import search_through_server

    photo = tmp_path / "query.jpg"
    scene_frame(12, 8).save(photo, quality=92)
    collection = Path(server[1]).parent / "collection"
    assert (collection / ADDRESS_FILE).exists()
    assert search_through_server(collection, photo, 5, None, None) is None
    assert search_through_server(collection, photo, 5, ["image"], None) is not None

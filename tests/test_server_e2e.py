"""End to end: `cbir serve` on a real collection, driven through its page in headless Chromium.

Needs Debian's chromium at /usr/bin/chromium (``scripts/install-chromium.sh``
installs it). The page screenshot goes to $CBIR_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.server_support import build_collection, photos, query_jpeg, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'cbir[test]')")
if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM}: run scripts/install-chromium.sh (needs root and apt-get)",
        allow_module_level=True,
    )


REPEATED_NAME = "IMG 000.jpg"
REPEATED_IN = ("a", "b", "c")


def add_files_of_one_name(collection: Path, root: Path) -> None:
    """Three photos that share one file name in different folders, as cameras name them."""
    from cbir.collection.collection import Collection

    for folder, photo in zip(REPEATED_IN, ("rocket", "motorcycle", "china")):
        (root / folder).mkdir(parents=True)
        photos()[photo].save(root / folder / REPEATED_NAME, quality=90)
    with Collection.open(collection) as store:
        store.add([root])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cbir serve` in its own process on a free loopback port; yields (base URL, collection path)."""
    root = tmp_path_factory.mktemp("e2e")
    collection = build_collection(root)
    add_files_of_one_name(collection, root / "camera")
    with serving(collection) as (base, _):
        yield base, collection


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        failed_requests: list[str] = []  # searches replaced by newer ones are aborted on purpose
        page.on(
            "requestfailed",
            lambda request: request.failure != "net::ERR_ABORTED" and failed_requests.append(request.url),
        )
        page.set_default_timeout(60_000)
        page.goto(server[0] + "/")
        yield page
        browser.close()
    assert not failed_requests, f"the page failed to load {failed_requests}"


def screenshot_path(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CBIR_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "server-ui.png"


def cards(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results .card",
        """nodes => nodes.map(node => ({
            id: Number(node.dataset.itemId),
            name: node.querySelector('.name').textContent,
            kind: node.querySelector('.kind').textContent,
            score: node.querySelector('.score').textContent,
            boxes: node.querySelectorAll('.box').length,
            thumbnailLoaded: node.querySelector('img').naturalWidth > 0,
        }))""",
    )


def test_upload_a_query_and_browse_the_results(page, server, tmp_path):
    base, _ = server
    query = tmp_path / "cat-edited.jpg"
    query.write_bytes(query_jpeg("cat"))
    expected = httpx.post(f"{base}/search", files={"image": (query.name, query.read_bytes())}, data={"k": 24}).json()
    expected_ids = [hit["item_id"] for hit in expected["results"]]

    page.wait_for_function("() => document.getElementById('collection-info').textContent.includes('16 items')")
    page.set_input_files("#file-input", str(query))
    page.wait_for_selector("#results .card")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .card img')].every(img => img.complete && img.naturalWidth > 0)"
    )
    page.wait_for_function("() => [...document.querySelectorAll('#results .card')].some(card => card.querySelector('.box'))")

    shown = cards(page)
    assert [card["id"] for card in shown] == expected_ids
    assert shown[0]["name"] == "cat.jpg"
    assert all(card["thumbnailLoaded"] for card in shown)
    assert all(card["boxes"] == (1 if card["kind"] == "region" else 0) for card in shown)
    assert "cat-edited.jpg" in page.text_content("#results-title")
    assert page.get_attribute("#results .card >> nth=0 >> .original", "href") == f"/items/{expected_ids[0]}/file"

    box = page.locator("#results .card .box").first.bounding_box()
    frame = page.locator("#results .card:has(.box) .frame").first.bounding_box()
    assert box["width"] > 10 and box["height"] > 10
    assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1

    path = screenshot_path(tmp_path)
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000


def test_click_a_result_to_search_with_it_then_filter(page, server, tmp_path):
    query = tmp_path / "coffee-edited.jpg"
    query.write_bytes(query_jpeg("coffee", seed=5))
    page.set_input_files("#file-input", str(query))
    page.wait_for_selector("#results .card")
    second = cards(page)[1]

    page.click("#results .card >> nth=1 >> .thumb")
    page.wait_for_function(f"() => document.querySelector('#results .card')?.dataset.itemId === '{second['id']}'")
    assert page.evaluate("location.hash") == f"#item={second['id']}"
    top = cards(page)[0]
    assert top["score"] == "1.000" and top["name"] == second["name"]
    page.wait_for_function("() => document.getElementById('query-caption').textContent.includes('Item')")

    page.select_option("#kind", "region")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .card .kind')].every(kind => kind.textContent === 'region')"
        " && document.querySelectorAll('#results .card').length === 3"
    )
    page.fill("#label", "face")
    page.press("#label", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#results .card').length === 2")
    assert {card["name"] for card in cards(page)} == {"cat.jpg", "astronaut.jpg"}


def test_a_bad_upload_shows_the_servers_message(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not a picture")
    page.set_input_files("#file-input", str(fake))
    page.wait_for_selector("#message:not([hidden])")
    assert "not an image" in page.text_content("#message")
    assert page.is_hidden("#query-preview") and not cards(page)


def shown_query(page) -> dict:
    """What the page says its query is: preview, caption, heading, cards."""
    return {
        "preview": page.get_attribute("#query-preview img", "alt"),
        "caption": page.text_content("#query-caption"),
        "title": page.text_content("#results-title"),
        "cards": [card["id"] for card in cards(page)],
    }


def upload(page, path: Path) -> None:
    page.set_input_files("#file-input", str(path))
    page.wait_for_function(f"() => document.getElementById('results-title').textContent.includes({path.name!r})")


def test_a_bad_upload_after_a_good_one_keeps_the_good_query_on_show(page, tmp_path):
    query = tmp_path / "cat-edited.jpg"
    query.write_bytes(query_jpeg("cat"))
    upload(page, query)
    before = shown_query(page)
    assert before["preview"] == "cat-edited.jpg" and before["cards"]

    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not a picture")
    page.set_input_files("#file-input", str(fake))
    page.wait_for_selector("#message:not([hidden])")
    message = page.text_content("#message")
    assert "notes.png" in message and "not an image" in message and "cat-edited.jpg" in message
    assert shown_query(page) == before


def test_more_results_extend_the_grid_page_by_page(page, server, tmp_path):
    base, _ = server
    query = tmp_path / "coffee-edited.jpg"
    query.write_bytes(query_jpeg("coffee", seed=2))
    everything = httpx.post(f"{base}/search", files={"image": (query.name, query.read_bytes())}, data={"k": 24}).json()
    page.select_option("#k", "12")
    upload(page, query)
    first = [card["id"] for card in cards(page)]
    assert len(first) == 12 and page.is_visible("#more")

    page.click("#more")
    page.wait_for_function("() => document.querySelectorAll('#results .card').length === 16")
    assert [card["id"] for card in cards(page)] == [hit["item_id"] for hit in everything["results"]]
    assert page.is_hidden("#more")  # all 16 items are shown
    assert "16 results" in page.text_content("#status")


def test_files_of_one_name_show_their_folder(page, tmp_path):
    query = tmp_path / "rocket-edited.jpg"
    query.write_bytes(query_jpeg("rocket"))
    upload(page, query)
    names = [card["name"] for card in cards(page)]
    assert sorted(name for name in names if REPEATED_NAME in name) == [f"{folder}/{REPEATED_NAME}" for folder in REPEATED_IN]
    assert "cat.jpg" in names  # the photo and a region of it share one file: its name needs no folder


def test_back_after_clicking_a_result_restores_the_uploaded_query(page, tmp_path):
    query = tmp_path / "astronaut-edited.jpg"
    query.write_bytes(query_jpeg("astronaut", seed=4))
    upload(page, query)
    uploaded = shown_query(page)

    page.click("#results .card >> nth=2 >> .thumb")
    page.wait_for_function("() => document.getElementById('results-title').textContent.includes('(item ')")
    assert shown_query(page)["cards"] != uploaded["cards"]

    page.go_back()
    page.wait_for_function("() => document.getElementById('results-title').textContent.includes('astronaut-edited.jpg')")
    page.wait_for_function("() => document.getElementById('query-caption').textContent.includes('astronaut-edited.jpg')")
    assert shown_query(page) == uploaded and page.evaluate("location.hash") == ""

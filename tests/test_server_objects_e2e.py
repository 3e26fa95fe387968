"""End to end: the page's object search on a collection indexed with --objects, in headless Chromium:
the class filter lists every object of a class, a chip searches with a detected object of the query,
and a box drawn on the query searches with that part; result cards outline the matching object."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.server_support import serving
from tests.test_objects_collection import write_photos
from tests.test_server_e2e import CHROMIUM, CHROMIUM_ARGS, cards, sync_api

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cbir serve` on a collection of skimage photos indexed with their objects; yields (base URL, photos)."""
    root = tmp_path_factory.mktemp("objects-e2e")
    photos, collection = write_photos(root / "photos"), root / "collection"
    command = [sys.executable, "-m", "cbir.cli", "index", str(photos), "-c", str(collection), "--objects", "--workers", "0"]
    indexed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert indexed.returncode == 0, indexed.stderr
    with serving(collection) as (base, _):
        yield base, photos


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(60_000)
        page.goto(server[0] + "/")
        yield page
        browser.close()
    assert not errors, f"the page raised {errors}"


def wait_for_title(page, text: str) -> None:
    page.wait_for_function("text => document.getElementById('results-title').textContent.includes(text)", arg=text)


def test_the_class_filter_lists_every_object_of_a_class(page):
    page.wait_for_selector("#object-class")
    page.select_option("#object-class", "cat")
    wait_for_title(page, "every cat")
    page.wait_for_function("() => [...document.querySelectorAll('#results .card')].every((card) => card.querySelector('.box') !== null)")
    shown = cards(page)
    assert {card["name"] for card in shown} == {"chelsea.jpg", "together.jpg"}
    assert all(card["kind"] == "region" and card["boxes"] == 1 for card in shown)


def test_a_chip_searches_with_a_detected_object_of_the_query(page, server, tmp_path):
    page.set_input_files("#file-input", str(server[1] / "coffee.jpg"))
    chip = page.wait_for_selector(".object-chip:has-text('cup')")
    chip.click()
    wait_for_title(page, "cup of coffee.jpg")
    page.wait_for_function("() => document.querySelectorAll('#results .card .box').length > 0")
    first = cards(page)[0]
    assert first["name"] == "coffee.jpg" and first["kind"] == "region" and first["boxes"] == 1
    assert page.eval_on_selector("#query-preview", "node => node.querySelectorAll('.box').length") == 1
    page.screenshot(path=str(tmp_path / "objects.png"))


def test_a_box_drawn_on_the_query_searches_with_that_part(page, server):
    page.set_input_files("#file-input", str(server[1] / "together.jpg"))
    page.wait_for_selector(".object-chip")
    image = page.wait_for_selector("#query-preview img")
    box = image.bounding_box()
    # the cat sits in the right half of together.jpg (x 510-990 of 1000, y 100-420 of 520)
    page.mouse.move(box["x"] + box["width"] * 0.53, box["y"] + box["height"] * 0.22)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.5, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.98, box["y"] + box["height"] * 0.8, steps=5)
    page.mouse.up()
    wait_for_title(page, "the part of together.jpg")
    page.wait_for_function("() => document.querySelectorAll('#results .card .box').length > 0")
    shown = cards(page)
    assert {card["name"] for card in shown[:2]} == {"chelsea.jpg", "together.jpg"}
    itself = next(card for card in shown if card["name"] == "together.jpg")
    assert itself["kind"] == "region" and itself["boxes"] == 1  # its cat, not the whole picture


def test_object_endpoints_answer_bad_requests_clearly(server):
    base, photos = server
    coffee = (photos / "coffee.jpg").read_bytes()
    found = httpx.post(f"{base}/objects/detect", files={"image": ("coffee.jpg", coffee)}, timeout=60).json()
    assert found["image_size"] == [600, 400] and found["objects"][0]["label"] == "cup"
    for box, message in (("10,10,5,40", "is empty"), ("900,900,950,950", "outside"), ("1,2", "x0,y0,x1,y1")):
        answer = httpx.post(f"{base}/objects/search", files={"image": ("coffee.jpg", coffee)}, data={"box": box}, timeout=60)
        assert answer.status_code == 422 and message in answer.json()["detail"]
    assert httpx.post(f"{base}/objects/label", data={"label": "giraffe"}).status_code == 404
    assert "choose a class" in httpx.post(f"{base}/objects/label", data={}).json()["detail"]
    assert {"cup", "person", "cat"} <= set(httpx.get(f"{base}/objects/classes").json()["classes"])


def test_an_upload_to_an_objects_collection_brings_its_objects(tmp_path):
    from fastapi.testclient import TestClient

    from cbir.server.app import create_app

    photos, collection = write_photos(tmp_path / "photos"), tmp_path / "collection"
    (photos / "coffee.jpg").rename(tmp_path / "coffee.jpg")
    command = [sys.executable, "-m", "cbir.cli", "index", str(photos), "-c", str(collection), "--objects", "--workers", "0"]
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 0
    client = TestClient(create_app(collection, token="t0ken"))
    added = client.post(
        "/items", files={"image": ("coffee.jpg", (tmp_path / "coffee.jpg").read_bytes(), "image/jpeg")}, headers={"Authorization": "Bearer t0ken"}
    )
    assert added.status_code == 201, added.text
    kinds = {item["kind"]: item for item in added.json()["items"]}
    assert set(kinds) == {"image", "region"} and "cup" in {label for item in added.json()["items"] for label in item["labels"]}

"""The similar-cases page in headless Chromium: upload a DICOM file or a picture, or click a case, and see its
most and least similar cases of the same modality with scores, labels and the vote."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.medical_support import shipped, write_medmnist, write_series
from tests.server_support import serving
from tests.test_server_e2e import CHROMIUM, CHROMIUM_ARGS, sync_api

from cbir.collection.collection import Collection  # noqa: E402
from cbir.encoders.encoder import EncoderSpec, shared_encoder  # noqa: E402
from cbir.pipelines.medical import MedicalPipeline  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cbir serve` on a medical collection: three CT series (two of one patient), pydicom's CT, MedMNIST images."""
    root = tmp_path_factory.mktemp("medical-web")
    scans = root / "scans"
    write_series(scans / "s1", 3, {"PatientID": "A"}, value=1100)
    write_series(scans / "s2", 3, {"PatientID": "A"}, value=1300)
    write_series(scans / "s3", 3, {"PatientID": "B"}, value=900)
    (scans / "CT_small.dcm").write_bytes(shipped("CT_small.dcm").read_bytes())
    write_medmnist(scans / "tiny.npz", per_split=4)
    collection = root / "collection"
    with Collection.create(collection, pipeline=MedicalPipeline(shared_encoder(EncoderSpec(image_size=64)), slices=2)) as store:
        store.add([scans], workers=0)
    with serving(collection) as (base, _):
        yield base, scans


def shown_cases(page, row: str) -> list[dict]:
    return page.eval_on_selector_all(
        f"#case-{row} .case-card",
        """nodes => nodes.map(node => ({
            id: Number(node.dataset.itemId),
            score: node.querySelector('.case-score').textContent,
            label: node.querySelector('.case-label').textContent,
            loaded: node.querySelector('img').naturalWidth > 0,
        }))""",
    )


def all_pictures_loaded(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.case-card img, #case-query-picture')].every(img => img.complete && img.naturalWidth > 0)"
    )


def test_upload_click_and_vote(server, tmp_path):
    base, scans = server
    picture = tmp_path / "query.png"
    Image.fromarray(np.load(scans / "tiny.npz")["test_images"][1]).save(picture)
    thumbnail = httpx.get(f"{base}/items/1/thumbnail")  # the search page's thumbnails of slices and series
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (256, 256)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(base + "/")
        page.wait_for_selector("#medical-link", state="visible")
        page.click("#medical-link")
        page.wait_for_url(base + "/medical")

        page.set_input_files("#case-file", str(scans / "s1" / "slice1.dcm"))
        page.check("#case-exclude")
        page.click("#case-go")
        page.wait_for_selector("#case-most .case-card")
        all_pictures_loaded(page)
        expected = httpx.post(f"{base}/medical/similar", files={"image": ("x.dcm", (scans / "s1" / "slice1.dcm").read_bytes())},
                              data={"k": "5", "exclude_same_patient": "true"}).json()
        most = shown_cases(page, "most")
        assert [case["id"] for case in most] == [hit["item_id"] for hit in expected["most_similar"]]
        assert len(most) == 2 and all(case["loaded"] for case in most)  # s3 and CT_small: patient A left out
        assert "2 candidate cases (CT, slice items)" in page.text_content("#case-summary")
        assert page.text_content("#case-query-name") == "uploaded scan"

        clicked = most[0]["id"]
        page.click(f"#case-most .case-card[data-item-id='{clicked}'] button")
        page.wait_for_function(f"() => document.getElementById('case-query-name').textContent.startsWith('#{clicked} ')")
        page.wait_for_selector("#case-most .case-card")
        assert clicked not in [case["id"] for case in shown_cases(page, "most")]

        page.uncheck("#case-exclude")
        page.fill("#case-item", "")
        page.set_input_files("#case-file", str(picture))
        page.click("#case-go")
        page.wait_for_function("() => document.getElementById('case-vote').textContent.startsWith('Vote of the 5 most similar')")
        assert page.text_content("#case-vote") == "Vote of the 5 most similar: 1: 4, 0: 1"  # most votes first
        all_pictures_loaded(page)
        most, least = shown_cases(page, "most"), shown_cases(page, "least")
        assert most[0]["label"] == "label 1" and len(least) == 3  # 8 MedMNIST images: 5 most, the 3 others least
        scores = [float(case["score"].split()[-1]) for case in most + least]
        assert scores == sorted(scores, reverse=True)
        page.screenshot(path=str(Path(os.environ.get("CBIR_SCREENSHOT_DIR") or tmp_path) / "medical-ui.png"), full_page=True)
        browser.close()

"""Bounded fuzzing: the image loader with generated and mutated bytes, the REST API from its OpenAPI schema.

Each part runs a fixed number of examples (well under a minute together);
a failure prints the example that caused it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cbir.io.images import ImageLoadError, load_image

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")


def _encoded(image_format: str, mode: str = "RGB", size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 120).save(buffer, image_format)
    return buffer.getvalue()


SEEDS = [
    _encoded("PNG"), _encoded("PNG", "RGBA"), _encoded("PNG", "P"), _encoded("JPEG"), _encoded("GIF", "P"),
    _encoded("BMP"), _encoded("TIFF"), _encoded("WEBP"), _encoded("PPM"), _encoded("TIFF", "I;16"),
]


@st.composite
def mutated_images(draw) -> bytes:
    """A valid small image of some format with bytes flipped, cut short or spliced."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=64))
    return bytes(data)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_images(), st.binary(max_size=512)))
def test_the_image_loader_gives_a_picture_or_a_reason(data):
    try:
        image = load_image(data, min_side=16, max_pixels=2_000_000)
    except ImageLoadError as error:
        assert str(error)
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    from cbir.server.app import create_app
    from cbir.server.settings import ServerSettings
    from tests.server_support import build_collection

    path: Path = build_collection(tmp_path_factory.mktemp("fuzz"))
    app = create_app(path, token="fuzz-token", settings=ServerSettings(refresh_interval=None, max_pixels=4_000_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.timeout(240)
def test_the_api_never_answers_with_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:

        @settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
        @given(operation.as_strategy())
        def answers_without_server_error(case) -> None:
            response = case.call()
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"

        answers_without_server_error()

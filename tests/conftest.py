"""Shared fixtures: small generated image sets and one encoder per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("CBIR_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not available (benchmark data lives beside the project, not in it)")
    return path


def pattern_image(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A distinctive picture: coloured shapes placed by ``seed``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        x1, y1 = x0 + int(rng.integers(15, 80)), y0 + int(rng.integers(15, 60))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    return image


def write_images(folder: Path, count: int, start: int = 0, size: tuple[int, int] = (160, 120)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(start, start + count):
        path = folder / f"img_{seed:04d}.jpg"
        pattern_image(seed, size).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    write_images(folder, 8)
    write_images(folder / "nested", 4, start=100)
    return folder


@pytest.fixture(scope="session")
def encoder():
    from cbir.encoders.encoder import Encoder, EncoderSpec

    return Encoder(EncoderSpec())

"""JPEG decoders for the pipeline's decode + resize: Pillow with draft (DCT) scaling, as the pipeline runs it, against
simplejpeg (libjpeg-turbo with DCT scaling through ``min_height``/``min_width``), on the same bytes.

Both hand the same resize the smallest DCT-scaled image whose short side reaches the encoder's; the table says
whether the resized pixels came out identical.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cbir.encoders.encoder import Encoder, image_pixels, resized_size
from cbir.pipelines.image import ImageDecoder

Decoder = Callable[[bytes], np.ndarray]


def pillow_decoder(encoder: Encoder) -> Decoder:
    """The pipeline's own decode and resize (``cbir.pipelines.image.ImageDecoder``: Pillow with draft scaling)."""
    decoder = ImageDecoder(encoder)
    return lambda data: decoder(None, [data]).pixels.numpy()


def simplejpeg_decoder(encoder: Encoder) -> Decoder | None:
    """simplejpeg's DCT-scaled decode, then the same resize; None when simplejpeg is not installed."""
    try:
        import simplejpeg
    except ImportError:
        return None
    short_side, max_aspect, interpolation = encoder.spec.image_size, encoder.spec.max_aspect, encoder.input_config.interpolation

    def decode(data: bytes) -> np.ndarray:
        image = Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=short_side, min_width=short_side))
        return image_pixels(image, resized_size(*image.size, short_side, max_aspect), interpolation).numpy()

    return decode


def milliseconds(decode: Decoder, contents: list[bytes]) -> float:
    started = time.perf_counter()
    for data in contents:
        decode(data)
    return 1000 * (time.perf_counter() - started) / len(contents)


def compare(encoder: Encoder, sets: dict[str, list[Path]], rounds: int) -> list[list[str]]:
    """Per set: simplejpeg's time / Pillow's, each decoder's ms per image (median of ``rounds`` alternating
    rounds), and whether their resized pixels are identical. Empty when simplejpeg is not installed."""
    pillow, simple = pillow_decoder(encoder), simplejpeg_decoder(encoder)
    if simple is None:
        return []
    rows = []
    for name, paths in sets.items():
        contents = [path.read_bytes() for path in paths]
        pillow(contents[0]), simple(contents[0])  # warm-up
        times: dict[str, list[float]] = {"pillow": [], "simplejpeg": []}
        for _ in range(rounds):
            times["pillow"].append(milliseconds(pillow, contents))
            times["simplejpeg"].append(milliseconds(simple, contents))
        mine, theirs = statistics.median(times["pillow"]), statistics.median(times["simplejpeg"])
        identical = all(np.array_equal(pillow(data), simple(data)) for data in contents)
        rows.append([name, f"{theirs / mine:.2f}x", f"{mine:.2f}", f"{theirs:.2f}", "yes" if identical else "no"])
    return rows

"""Strips: one row of frames per moment or matched segment, under the query, as one picture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cbir.fonts import draw_text
from cbir.io.video import VideoError, frames_at

TILE = 150
BORDER = 6
CAPTION_WIDTH = 210
CAPTION_SIZE = 13
FRAMES_PER_STRIP = 6


@dataclass(frozen=True)
class Strip:
    """A row: a caption, then frames of ``uri`` at ``times`` (a picture instead, for a photo query)."""

    caption: str
    uri: str
    times: Sequence[float] = ()
    picture: Image.Image | None = None


def spread(times: Sequence[float], count: int = FRAMES_PER_STRIP) -> list[float]:
    """At most ``count`` of ``times``, evenly spread and keeping the first and last."""
    times = list(times)
    if len(times) <= count:
        return times
    return [times[int(round(i))] for i in np.linspace(0, len(times) - 1, count)]


def segment_times(start: float, end: float, count: int = FRAMES_PER_STRIP) -> list[float]:
    """``count`` times evenly inside [start, end)."""
    step = max(end - start, 0.0) / count
    return [start + step * (i + 0.5) for i in range(count)]


def _tile(pixels: Image.Image) -> Image.Image:
    pixels = pixels.copy()
    pixels.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE), (235, 235, 235))
    tile.paste(pixels, ((TILE - pixels.width) // 2, (TILE - pixels.height) // 2))
    return tile


def _tiles(strip: Strip) -> list[Image.Image]:
    if strip.picture is not None:
        return [_tile(strip.picture)]
    try:
        return [_tile(Image.fromarray(frame)) for frame in frames_at(strip.uri, list(strip.times), TILE)]
    except VideoError as error:
        notice = Image.new("RGB", (TILE, TILE), (110, 110, 110))
        draw_text(ImageDraw.Draw(notice), (8, TILE // 2 - 8), error.reason[:22], 12, (255, 255, 255))
        return [notice]


def write_strips(strips: Sequence[Strip], path: str | Path) -> Path:
    """One row per strip (the first one is the query, framed blue), written as a picture at ``path``."""
    rows = [_tiles(strip) for strip in strips]
    columns = max(len(tiles) for tiles in rows)
    row_h = TILE + 2 * BORDER
    sheet = Image.new("RGB", (CAPTION_WIDTH + columns * (TILE + BORDER) + BORDER, len(rows) * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for number, (strip, tiles) in enumerate(zip(strips, rows)):
        y = number * row_h
        colour = (40, 90, 220) if number == 0 else (200, 200, 200)
        draw.rectangle([1, y + 1, CAPTION_WIDTH - 4, y + row_h - 2], outline=colour, width=3)
        draw_text(draw, (BORDER + 4, y + BORDER + 4), strip.caption, CAPTION_SIZE, (20, 20, 20))
        for column, tile in enumerate(tiles):
            sheet.paste(tile, (CAPTION_WIDTH + column * (TILE + BORDER), y + BORDER))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path

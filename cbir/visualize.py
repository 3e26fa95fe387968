"""Result grids: the query beside its top-k hits, with scores, as one picture."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from cbir.collection.collection import SearchResult
from cbir.fonts import draw_text, text_width
from cbir.io.images import ImageLoadError, load_image

CAPTION_HEIGHT = 34
CAPTION_SIZE = 12
BORDER = 6
TILE = 256


def _thumbnail(image: Image.Image, size: int) -> Image.Image:
    image = image.copy()
    image.thumbnail((size, size))
    canvas = Image.new("RGB", (size, size), (235, 235, 235))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def _with_box(image: Image.Image, box: Sequence[float] | None) -> Image.Image:
    if box is None:
        return image
    image = image.copy()
    ImageDraw.Draw(image).rectangle(list(box), outline=(255, 40, 40), width=max(2, image.width // 150))
    return image


def notice_tile(text: str, size: int = 44) -> Image.Image:
    """A grey square that says, one word a line, why there is no picture ("file missing")."""
    tile = Image.new("RGB", (TILE, TILE), (110, 110, 110))
    draw = ImageDraw.Draw(tile)
    words = text.split()
    top = (TILE - len(words) * size * 1.25) / 2
    for number, word in enumerate(words):
        draw_text(draw, ((TILE - text_width(word, size)) / 2, top + number * size * 1.25), word, size, (255, 255, 255))
    return tile


def _load_hit(result: SearchResult) -> Image.Image:
    if not Path(result.uri).exists():
        return notice_tile("file missing")
    try:
        return _with_box(load_image(result.uri), result.box)
    except ImageLoadError:
        return notice_tile("unreadable")


def result_grid(
    query: Image.Image,
    results: Sequence[SearchResult],
    path: str | Path,
    thumb: int = 180,
    columns: int = 6,
    correct: Sequence[bool] | None = None,
    load_hit=_load_hit,
) -> Path:
    """Write the query (first cell, blue) and its hits with rank, score and file name.

    ``correct`` (one flag per hit) frames hits green or red.
    """
    cells = [("query", _thumbnail(query, thumb), (40, 90, 220))]
    for position, result in enumerate(results):
        colour = (200, 200, 200)
        if correct is not None:
            colour = (40, 170, 60) if correct[position] else (220, 50, 50)
        caption = f"#{result.rank}  {result.score:.3f}\n{Path(result.uri).name[:26]}"
        cells.append((caption, _thumbnail(load_hit(result), thumb), colour))
    columns = max(1, min(columns, len(cells)))
    rows = (len(cells) + columns - 1) // columns
    cell_w, cell_h = thumb + 2 * BORDER, thumb + 2 * BORDER + CAPTION_HEIGHT
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for position, (caption, image, colour) in enumerate(cells):
        x, y = (position % columns) * cell_w, (position // columns) * cell_h
        draw.rectangle([x + 1, y + 1, x + cell_w - 2, y + thumb + 2 * BORDER - 2], fill=colour)
        sheet.paste(image, (x + BORDER, y + BORDER))
        draw_text(draw, (x + BORDER, y + thumb + 2 * BORDER + 2), caption, CAPTION_SIZE, (20, 20, 20))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path

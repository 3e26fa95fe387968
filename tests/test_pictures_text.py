"""Names in pictures: drawn in a font that has their script, and a clear tile where a file is missing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cbir.collection.collection import SearchResult
from cbir.fonts import draw_text, font_file_for
from cbir.visualize import BORDER, notice_tile, result_grid

NOT_A_CHARACTER = "\U0010fffd"  # no font has it: its rendering is the font's .notdef box
NAMES = "Кошка Ёж 猫の写真 😀"


def _drawn(character: str, font) -> np.ndarray:
    image = Image.new("L", (48, 48), 0)
    ImageDraw.Draw(image).text((8, 4), character, font=font, fill=255)
    return np.asarray(image)


def _drawn_by_cbir(character: str) -> np.ndarray:
    image = Image.new("L", (48, 48), 0)
    draw_text(ImageDraw.Draw(image), (8, 4), character, 28, 255)
    return np.asarray(image)


def test_names_in_other_scripts_are_drawn_as_glyphs_not_boxes():
    """Each character that some font here has is drawn with it; DejaVu Sans covers Cyrillic and emoticons."""
    covered = 0
    for character in NAMES.replace(" ", ""):
        path = font_file_for(character)
        if path is None:
            continue  # no font on this machine has it (CJK without a CJK font): drawn as a box, nothing better exists
        box = _drawn(NOT_A_CHARACTER, ImageFont.truetype(str(path), 28))
        glyph = _drawn_by_cbir(character)
        assert glyph.any() and not np.array_equal(glyph, box), character
        covered += 1
    assert all(font_file_for(character) is not None for character in "КошкаЁж😀")
    assert covered >= 8


def test_pillows_own_default_font_would_draw_cyrillic_as_boxes():
    """Why a wide font is needed: Pillow's built-in font has no Cyrillic."""
    default = ImageFont.load_default(size=28)
    assert np.array_equal(_drawn("К", default), _drawn(NOT_A_CHARACTER, default))


def test_grid_captions_draw_cyrillic_names(tmp_path):
    photo = tmp_path / "Кошка.jpg"
    Image.new("RGB", (64, 48), (30, 120, 200)).save(photo)
    hit = SearchResult(1, 0.9, 1, str(photo), "image")
    latin = SearchResult(1, 0.9, 1, str(tmp_path / "Koshka.jpg"), "image")
    Image.new("RGB", (64, 48), (30, 120, 200)).save(latin.uri)
    cyrillic_grid = np.asarray(Image.open(result_grid(Image.new("RGB", (64, 48)), [hit], tmp_path / "a.png", thumb=120)))
    latin_grid = np.asarray(Image.open(result_grid(Image.new("RGB", (64, 48)), [latin], tmp_path / "b.png", thumb=120)))
    caption = slice(120 + 2 * BORDER, None)
    assert not np.array_equal(cyrillic_grid[caption], latin_grid[caption])


def test_a_missing_file_gets_a_tile_that_says_so(tmp_path):
    gone = SearchResult(1, 0.5, 7, str(tmp_path / "deleted.jpg"), "image")
    grid = np.asarray(Image.open(result_grid(Image.new("RGB", (64, 48), (0, 0, 0)), [gone], tmp_path / "g.png", thumb=120)))
    cell = grid[BORDER:BORDER + 120, 120 + 3 * BORDER:120 + 3 * BORDER + 120]
    assert (cell > 200).all(axis=2).sum() > 150  # white letters on the grey tile
    missing, unreadable = np.asarray(notice_tile("file missing")), np.asarray(notice_tile("unreadable"))
    assert not np.array_equal(missing, unreadable)

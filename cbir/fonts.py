"""Text in pictures for names in any script: DejaVu Sans (shipped with matplotlib) first, then any
installed font that has a character DejaVu lacks (CJK, for example), so names are drawn, not boxes.

A character no font here has is drawn with DejaVu Sans, which shows it as its empty box.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageDraw, ImageFont

PRIMARY_FAMILY = "DejaVu Sans"


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """DejaVu Sans from matplotlib's data, then one regular font per family that matplotlib's font manager found."""
    import matplotlib
    from matplotlib import font_manager

    primary = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    regular: dict[str, Path] = {}
    for entry in font_manager.fontManager.ttflist:
        if entry.style == "normal" and entry.weight in (400, "normal", "regular") and not _is_placeholder(entry.fname):
            regular.setdefault(entry.name, Path(entry.fname))
    others = sorted(set(regular.values()) - {primary})
    return tuple(path for path in (primary, *others) if path.is_file())


def _is_placeholder(path: str) -> bool:
    """Fonts whose glyphs only name a script in a box (matplotlib's Last Resort) draw no real character."""
    return "lastresort" in Path(path).name.lower()


@functools.lru_cache(maxsize=None)
def _code_points(path: Path) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(str(path)).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=4096)
def font_file_for(character: str) -> Path | None:
    """The first font file that has a glyph for ``character``, or None when none has."""
    for path in font_files():
        if ord(character) in _code_points(path):
            return path
    return None


@functools.lru_cache(maxsize=64)
def _font(path: Path | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        files = font_files()
        if not files:
            return ImageFont.load_default(size=size)
        path = files[0]
    return ImageFont.truetype(str(path), size)


def _runs(line: str) -> list[tuple[str, Path | None]]:
    """``line`` split into pieces that one font draws."""
    runs: list[tuple[str, Path | None]] = []
    for character in line:
        path = font_file_for(character) if not character.isspace() else None
        if path is None and runs:
            path = runs[-1][1] if character.isspace() else None
        if runs and runs[-1][1] == path:
            runs[-1] = (runs[-1][0] + character, path)
        else:
            runs.append((character, path))
    return runs


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill) -> None:
    """Draw multi-line ``text`` at ``xy``, each character in the first font that has it."""
    x0, y = xy
    for line in text.split("\n"):
        x = x0
        for run, path in _runs(line):
            font = _font(path, size)
            draw.text((x, y), run, font=font, fill=fill)
            x += font.getlength(run)
        y += round(size * 1.25)


def text_width(text: str, size: int) -> float:
    """Width in pixels of the longest line of ``text`` as ``draw_text`` draws it."""
    return max(sum(_font(path, size).getlength(run) for run, path in _runs(line)) for line in text.split("\n"))


def matplotlib_families(texts: list[str]) -> list[str]:
    """Font families for matplotlib (which falls back from one to the next per glyph) to draw ``texts``."""
    from matplotlib import font_manager

    families = [PRIMARY_FAMILY]
    for character in sorted({character for text in texts for character in text}):
        path = font_file_for(character)
        if path is not None:
            family = font_manager.FontProperties(fname=str(path)).get_name()
            if family not in families:
                families.append(family)
    return families

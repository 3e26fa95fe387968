"""Pictures of identified faces: a box and a name on every face."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from cbir.faces.people import Identification
from cbir.fonts import draw_text, text_width

KNOWN = (40, 190, 70)
UNKNOWN = (230, 60, 50)


def annotate_faces(image: Image.Image, identifications: Sequence[Identification], path: str | Path | None = None) -> Image.Image:
    """A copy of ``image`` with each face boxed (green: known, red: unknown) and labelled with
    its name and similarity; saved to ``path`` when given."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    size = max(12, round(max(canvas.size) / 45))
    for found in identifications:
        colour = KNOWN if found.name else UNKNOWN
        left, top, right, bottom = found.face.box
        draw.rectangle([left, top, right, bottom], outline=colour, width=width)
        caption = f"{found.label} {found.similarity:.2f}"
        text_w, text_h = round(text_width(caption, size)), round(size * 1.25)
        y = bottom + width if bottom + text_h + 3 * width < canvas.height else max(0, top - text_h - 3 * width)
        x = max(0, min(left, canvas.width - text_w - 2 * width))
        draw.rectangle([x, y, x + text_w + 2 * width, y + text_h + 2 * width], fill=colour)
        draw_text(draw, (x + width, y + width), caption, size, (255, 255, 255))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas


def draw_box(image: Image.Image, box: Sequence[float], colour: tuple[int, int, int] = KNOWN) -> Image.Image:
    """A copy of ``image`` with one box drawn."""
    canvas = image.convert("RGB").copy()
    ImageDraw.Draw(canvas).rectangle(list(box), outline=colour, width=max(2, round(max(canvas.size) / 300)))
    return canvas

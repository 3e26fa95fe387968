"""Pictures of identified faces: a box and a name on every face."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from cbir.faces.people import Identification

KNOWN = (40, 190, 70)
UNKNOWN = (230, 60, 50)


def annotate_faces(image: Image.Image, identifications: Sequence[Identification], path: str | Path | None = None) -> Image.Image:
    """A copy of ``image`` with each face boxed (green: known, red: unknown) and labelled with
    its name and similarity; saved to ``path`` when given."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 45)))
    for found in identifications:
        colour = KNOWN if found.name else UNKNOWN
        left, top, right, bottom = found.face.box
        draw.rectangle([left, top, right, bottom], outline=colour, width=width)
        caption = f"{found.label} {found.similarity:.2f}"
        text_box = draw.textbbox((0, 0), caption, font=font)
        text_w, text_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
        y = bottom + width if bottom + text_h + 3 * width < canvas.height else max(0, top - text_h - 3 * width)
        x = max(0, min(left, canvas.width - text_w - 2 * width))
        draw.rectangle([x, y, x + text_w + 2 * width, y + text_h + 2 * width], fill=colour)
        draw.text((x + width, y + width - text_box[1]), caption, fill=(255, 255, 255), font=font)
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

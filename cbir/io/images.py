"""Safe image loading: every file either becomes an RGB picture or a clear reason why not.

Handles EXIF orientation, CMYK, palette and alpha images, 16-bit and float
greyscale, animated files (first frame), and refuses decompression bombs
before decoding. JPEGs are decoded at reduced size (draft mode) when only a
small picture is needed.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
DEFAULT_MAX_PIXELS = 120_000_000

EXIF_ORIENTATION = 0x0112
UPRIGHT_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# The check on pixel count below replaces PIL's global bomb guard.
Image.MAX_IMAGE_PIXELS = None


class ImageLoadError(Exception):
    """A file that cannot be used as an image; the message says why."""


def is_image_path(path: Path) -> bool:
    """Whether ``path`` has a common image file suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(
    source: str | Path | bytes | Image.Image,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open a file, its bytes, or a PIL image as an upright 8-bit RGB image.

    ``min_side`` lets JPEG decoding shrink by 2/4/8 while keeping the short
    side at least that long; ``info["original_size"]`` keeps the upright
    full-resolution (width, height). Raises ``ImageLoadError`` with a reason.
    """
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    if not isinstance(source, bytes):
        try:
            path = Path(source).expanduser()
            source = path.read_bytes()
        except FileNotFoundError:
            raise ImageLoadError(f"file not found: {path}") from None
        except OSError as error:
            raise ImageLoadError(f"unreadable: {error.strerror or error}") from None
    if not source:
        raise ImageLoadError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(source)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageLoadError(
                        f"{width}x{height} pixels exceeds the limit of {max_pixels:,} (decompression bomb?)"
                    )
                if min_side and image.format == "JPEG":
                    scale = min_side / min(width, height)
                    image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
                image.load()
                upright = to_rgb(_upright_reduced(image, min_side) if min_side else ImageOps.exif_transpose(image))
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError("not a recognised image format") from None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"decompression bomb: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(f"corrupt or truncated image: {error}") from None
    turned = (upright.width > upright.height) != (width > height)
    upright.info["original_size"] = (height, width) if turned else (width, height)
    return upright


def _upright_reduced(image: Image.Image, min_side: int) -> Image.Image:
    """``image`` upright, first shrunk by a whole factor while its short side stays at least ``2 * min_side``.

    Shrinking before turning and converting means no further full-size copy
    is made: a 7000 x 7000 PNG needs its decoded pixels once, not three times.
    """
    factor = min(image.size) // (2 * min_side)
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if factor < 2:
        return ImageOps.exif_transpose(image)
    try:
        reduced = image.reduce(factor)
    except ValueError:
        return ImageOps.exif_transpose(image)
    turn = UPRIGHT_TRANSPOSITIONS.get(orientation)
    return reduced.transpose(turn) if turn is not None else reduced


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB version of ``image``; transparency is flattened onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = _rescale_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """Stretch a 16-bit or float greyscale image to the 0-255 range."""
    values = np.asarray(image, dtype=np.float32)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12) * 255.0
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")

"""Uploaded images: checked before anything is decoded in full, stored under the collection by content hash."""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cbir.core.hashing import content_hash
from cbir.io.atomic import atomic_write
from cbir.io.images import IMAGE_SUFFIXES, ImageLoadError, load_image
from cbir.server.errors import ApiError

SUFFIX_OF_FORMAT = {
    "JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm",
}
UNSAFE_NAME_CHARACTERS = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class Upload:
    """An uploaded image that passed the checks: its bytes, its decoded picture and its format."""

    data: bytes
    image: Image.Image
    format: str
    filename: str


def probe(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) read from the header only; refuses non-images and oversized pictures."""
    if not data:
        raise ApiError(422, "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(415, "the upload is not an image this server can read (JPEG, PNG, WebP, GIF, BMP, TIFF, PNM)") from None
    if width * height > max_pixels:
        raise ApiError(
            413, f"the image is {width}x{height} = {width * height:,} pixels; this server accepts at most {max_pixels:,}"
        )
    return image_format or "unknown", width, height


def read_upload(
    data: bytes, filename: str | None, max_bytes: int, max_pixels: int, min_side: int | None = None
) -> Upload:
    """Check and decode uploaded bytes into an upright RGB picture (JPEGs shrink in decoding to ``min_side``)."""
    if len(data) > max_bytes:
        raise ApiError(413, f"the upload is {len(data) / 1048576:.1f} MiB; this server accepts at most {max_bytes / 1048576:g} MiB")
    image_format, _, _ = probe(data, max_pixels)
    try:
        image = load_image(data, min_side=min_side, max_pixels=max_pixels)
    except ImageLoadError as error:
        raise ApiError(422, f"the image could not be decoded: {error}") from None
    return Upload(data, image, image_format, filename or "upload")


def safe_stem(filename: str, limit: int = 60) -> str:
    """A file-name stem made only of letters, digits, dots, dashes and underscores."""
    stem = Path(filename.replace("\\", "/")).stem
    cleaned = UNSAFE_NAME_CHARACTERS.sub("-", stem).strip(".-_")
    return cleaned[:limit] or "upload"


def store_upload(upload: Upload, folder: Path) -> Path:
    """Write the uploaded bytes unchanged to ``folder/<hash>/<name>.<ext>``; the same upload gets the same file."""
    suffix = SUFFIX_OF_FORMAT.get(upload.format)
    if suffix is None or suffix not in IMAGE_SUFFIXES:
        raise ApiError(415, f"{upload.format} images can be searched with but not added; send JPEG, PNG, WebP, GIF, BMP or TIFF")
    path = folder / content_hash(upload.data)[:16] / f"{safe_stem(upload.filename)}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with atomic_write(path) as stream:
            stream.write(upload.data)
    return path

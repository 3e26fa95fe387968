import io

import numpy as np
import pytest
from PIL import Image

from cbir.io.images import ImageLoadError, load_image
from tests.conftest import pattern_image


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def test_plain_jpeg_loads_as_rgb(tmp_path):
    path = tmp_path / "a.jpg"
    pattern_image(1).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (160, 120)


def test_draft_mode_shrinks_large_jpegs_but_keeps_the_short_side():
    data = _jpeg_bytes(pattern_image(2, size=(2000, 1500)))
    image = load_image(data, min_side=224)
    assert 224 <= min(image.size) < 1500
    assert image.size[0] / image.size[1] == pytest.approx(2000 / 1500, rel=0.01)
    assert image.info["original_size"] == (2000, 1500)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is a text file, not a picture", "not a recognised image"),
        (_jpeg_bytes(pattern_image(3))[:600], "truncated"),
    ],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageLoadError, match=reason):
        load_image(data)


def test_corrupt_body_is_reported(tmp_path):
    data = bytearray(_jpeg_bytes(pattern_image(4, size=(400, 300))))
    data[400:1400] = bytes(1000)
    with pytest.raises(ImageLoadError):
        load_image(bytes(data[: len(data) // 2]))


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)
    with pytest.raises(ImageLoadError, match="exceeds the limit"):
        load_image(path)


def test_exif_rotation_is_applied():
    image = pattern_image(5, size=(200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright = load_image(_jpeg_bytes(image, exif=exif.tobytes()))
    assert upright.size == (100, 200)
    assert upright.info["original_size"] == (100, 200)


def test_cmyk_becomes_rgb():
    upright = load_image(_jpeg_bytes(pattern_image(6).convert("CMYK")))
    assert upright.mode == "RGB"
    reference = np.asarray(pattern_image(6), dtype=float)
    assert np.abs(np.asarray(upright, dtype=float) - reference).mean() < 20


def test_sixteen_bit_greyscale_is_stretched_to_8_bit():
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    image = load_image(buffer.getvalue())
    array = np.asarray(image)
    assert image.mode == "RGB" and array.min() == 0 and array.max() == 255


def test_alpha_is_flattened_on_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    assert load_image(buffer.getvalue()).getpixel((5, 5)) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    red, green, blue = load_image(buffer.getvalue()).getpixel((10, 10))
    assert red > 200 and blue < 50

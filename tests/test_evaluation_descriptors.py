"""The descriptor cache and the shared-backbone pooling group."""

import shutil

import numpy as np
import pytest

from cbir.encoders.encoder import MULTI_SCALES, Encoder, EncoderSpec
from cbir.evaluation.descriptors import EncoderChoice, ImageRef, PoolingGroupEncoder, describe, describe_images
from tests.conftest import pattern_image, write_images

SMALL = dict(image_size=64)


class Counter:
    """A progress callback that remembers how many images were encoded."""

    def __init__(self):
        self.total = 0

    def __call__(self, done, total):
        self.total = total


def test_pooling_group_gives_what_each_encoder_gives():
    specs = [EncoderSpec(pooling=name, scales=MULTI_SCALES, **SMALL) for name in ("spoc", "gem", "rmac")]
    images = [pattern_image(seed, (96, 72)) for seed in range(3)]
    combined = PoolingGroupEncoder(specs).encode_images(images)
    width = combined.shape[1] // 3
    for block, spec in enumerate(specs):
        alone = Encoder(spec).encode_images(images)
        np.testing.assert_allclose(combined[:, block * width : (block + 1) * width], alone, atol=1e-5)


def test_cache_encodes_once_and_finds_renamed_copies(tmp_path):
    paths = write_images(tmp_path / "images", 3, size=(96, 72))
    cache = tmp_path / "cache"
    counter = Counter()
    first = describe(EncoderChoice.of(EncoderSpec(pooling="gem", **SMALL)), paths, cache, progress=counter)
    assert counter.total == 3 and first.vectors.shape == (3, 1280)
    copy = tmp_path / "renamed.jpg"
    shutil.copy(paths[1], copy)
    again = Counter()
    second = describe(EncoderChoice.of(EncoderSpec(pooling="gem", **SMALL)), [copy, paths[0]], cache, progress=again)
    assert again.total == 0  # nothing encoded
    np.testing.assert_array_equal(second.vectors, first.vectors[[1, 0]])


def test_cache_is_keyed_by_encoder_and_content(tmp_path):
    paths = write_images(tmp_path / "images", 2, size=(96, 72))
    cache = tmp_path / "cache"
    gem = describe(EncoderChoice.of(EncoderSpec(pooling="gem", **SMALL)), paths, cache)
    counter = Counter()
    describe(EncoderChoice.of(EncoderSpec(pooling="gem", image_size=80)), paths, cache, progress=counter)
    assert counter.total == 2  # another image size is another encoder
    pattern_image(99, (96, 72)).save(paths[0])  # the file changes under the same name
    counter = Counter()
    changed = describe(EncoderChoice.of(EncoderSpec(pooling="gem", **SMALL)), paths, cache, progress=counter)
    assert counter.total == 1
    assert not np.allclose(changed.vectors[0], gem.vectors[0])
    np.testing.assert_array_equal(changed.vectors[1], gem.vectors[1])


def test_grouped_choices_fill_each_encoders_cache(tmp_path):
    paths = write_images(tmp_path / "images", 2, size=(96, 72))
    cache = tmp_path / "cache"
    choices = [EncoderChoice.of(EncoderSpec(pooling=name, **SMALL)) for name in ("spoc", "mac")]
    together = describe_images(choices, paths, cache)
    counter = Counter()
    mac = describe(EncoderChoice.of(EncoderSpec(pooling="mac", **SMALL)), paths, cache, progress=counter)
    assert counter.total == 0
    np.testing.assert_array_equal(mac.vectors, together[1].vectors)
    assert not np.allclose(together[0].vectors, together[1].vectors)


def test_unreadable_images_are_skipped_with_a_reason(tmp_path):
    paths = write_images(tmp_path / "images", 2, size=(96, 72))
    broken = tmp_path / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "images" / "missing.jpg"
    result = describe(EncoderChoice.of(EncoderSpec(pooling="gem", **SMALL)), [paths[0], broken, missing, paths[1]], tmp_path / "c")
    assert result.kept.tolist() == [0, 3]
    reasons = dict(result.skipped)
    assert set(reasons) == {broken, missing}
    assert "unreadable" in reasons[missing] and reasons[broken]


def test_cropped_query_differs_from_the_whole_image(tmp_path):
    path = write_images(tmp_path / "images", 1, size=(160, 120))[0]
    choice = EncoderChoice.of(EncoderSpec(pooling="gem", **SMALL))
    result = describe(choice, [ImageRef(path), ImageRef(path, (0, 0, 80, 60))], tmp_path / "c")
    assert result.kept.tolist() == [0, 1]
    assert float(result.vectors[0] @ result.vectors[1]) < 0.999


def test_encoder_choice_rejects_both_kinds():
    with pytest.raises(ValueError, match="not both"):
        EncoderChoice(spec=EncoderSpec(), encoder_file="model.pt")


def test_only_pooling_may_differ_within_a_backbone_pass():
    from cbir.evaluation.descriptors import group_key

    assert group_key(EncoderSpec(pooling="spoc")) == group_key(EncoderSpec(pooling="gem", gem_p=4.0))
    assert group_key(EncoderSpec(image_size=300)) != group_key(EncoderSpec())
    assert group_key(EncoderSpec(scales=MULTI_SCALES)) != group_key(EncoderSpec())

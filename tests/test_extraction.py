"""The batched pipeline (worker decoding, uint8 hand-over, batch normalisation) gives what encoding one image gives."""

from __future__ import annotations

import numpy as np

from cbir.encoders.encoder import EncoderSpec, shared_encoder
from cbir.extraction import extract
from cbir.io.images import load_image
from tests.conftest import write_images


def test_pipeline_vectors_equal_single_image_encoding(tmp_path) -> None:
    paths = write_images(tmp_path / "a", 5, size=(160, 120)) + write_images(tmp_path / "b", 4, start=50, size=(90, 200))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    paths.insert(3, tmp_path / "broken.jpg")
    encoder = shared_encoder(EncoderSpec())
    batches = list(extract(encoder, paths, batch_size=4, workers=1))
    decoded = [entry for batch in batches for entry in batch.decoded]
    assert [entry.index for entry in decoded] == list(range(len(paths)))
    assert decoded[3].pixels is None and decoded[3].error
    pipeline = np.concatenate([batch.vectors for batch in batches])
    single = encoder.encode_images([load_image(p, min_side=224) for p in paths if p.name != "broken.jpg"])
    np.testing.assert_allclose(pipeline, single, atol=1e-6)

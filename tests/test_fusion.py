"""Inference rewrites of a backbone: folded batch norms and pad-free SAME convolutions give the same features."""

from __future__ import annotations

import pytest
import torch
from timm.layers.conv2d_same import Conv2dSame
from torch import nn

from cbir.encoders.encoder import Encoder, EncoderSpec, save_encoder_file
from cbir.encoders.fusion import SymmetricSameConv2d, fold_batch_norms, fuse_for_inference


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (9, 12), (2, 3)])
def test_symmetric_same_convolution_equals_padded_one(kernel: int, size: tuple[int, int]) -> None:
    torch.manual_seed(kernel)
    for groups, channels in ((1, 4), (6, 6)):
        same = Conv2dSame(channels, 6, kernel, stride=2, groups=groups, bias=True).eval()
        x = torch.randn(2, channels, *size)
        with torch.inference_mode():
            expected, got = same(x), SymmetricSameConv2d(same)(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batch_norms_fold_into_the_convolutions_before_them() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4))
    for norm in (block[1], block[4]):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-1, 1)
    block.eval()
    x = torch.randn(2, 3, 10, 12)
    with torch.inference_mode():
        expected = block(x)
        assert fold_batch_norms(block) == 2
        got = block(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_encoder_for_inference_gives_the_same_descriptors(encoder: Encoder) -> None:
    fused = Encoder(EncoderSpec()).for_inference()
    assert not any(isinstance(m, (nn.BatchNorm2d, Conv2dSame)) for m in fused.backbone.modules())
    torch.manual_seed(1)
    for size in ((224, 336), (225, 301), (97, 130)):
        batch = torch.randn(2, 3, *size)
        with torch.inference_mode():
            torch.testing.assert_close(fused(batch), encoder(batch), rtol=0, atol=1e-5)


def test_an_encoder_prepared_for_inference_cannot_be_saved(tmp_path) -> None:
    fused = Encoder(EncoderSpec()).for_inference()
    with pytest.raises(ValueError, match="save the encoder that was trained"):
        save_encoder_file(tmp_path / "model.pt", fused)


class NormBeforeConv(nn.Module):
    """Declares a conv then a norm but applies them the other way round: folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.norm = nn.BatchNorm2d(3)
        self.norm.running_mean.fill_(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


def test_a_rewrite_that_changes_the_output_is_refused_with_a_warning() -> None:
    module = NormBeforeConv().eval()
    with pytest.warns(UserWarning, match="running it unfolded"):
        kept = fuse_for_inference(module)
    assert kept is module and isinstance(module.norm, nn.BatchNorm2d)

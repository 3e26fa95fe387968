"""Backbones, pooling, whitening and the encoder that combines them."""

from cbir.encoders.encoder import Encoder, EncoderSpec
from cbir.encoders.pooling import POOLINGS
from cbir.encoders.whitening import PCAWhitening

__all__ = ["Encoder", "EncoderSpec", "PCAWhitening", "POOLINGS"]

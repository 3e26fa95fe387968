"""Backbones, pooling, whitening and the encoder that combines them (loaded on first use)."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "encoder": ["Encoder"],
        "spec": ["EncoderSpec"],
        "pooling": ["POOLINGS"],
        "whitening": ["PCAWhitening"],
    },
)

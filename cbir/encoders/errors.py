"""Errors of the encoders a user can act on, importable without torch (the command line catches them)."""

from __future__ import annotations

from pathlib import Path


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights for a backbone could not be found locally."""


def missing_weights_message(path: str | Path) -> str:
    """The sentence for a weights file that is not there."""
    return (
        f"weights file {path} does not exist: pass --weights with the path of a state dict "
        "saved by torch.save(model.state_dict(), FILE)"
    )

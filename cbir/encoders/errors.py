"""Errors of the encoders a user can act on, importable without torch (the command line catches them)."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights for a backbone could not be found locally."""

"""Where cbir keeps what it can make again (descriptor caches, quantised models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder(name: str) -> Path:
    """``$CBIR_CACHE/NAME``, else ``$XDG_CACHE_HOME/cbir/NAME`` (``~/.cache/cbir/NAME``)."""
    root = os.environ.get("CBIR_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cbir"
    return Path(root) / name

"""Items: what a pipeline makes of a source and a collection stores and searches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Item:
    """One searchable thing: a whole image, a region, a face, a video frame or shot, a slice."""

    kind: str
    uri: str
    vector: np.ndarray
    content_hash: str | None = None
    box: tuple[float, float, float, float] | None = None
    t_start: float | None = None
    t_end: float | None = None
    labels: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    id: int | None = None

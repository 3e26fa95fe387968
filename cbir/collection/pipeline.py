"""What a collection needs from a pipeline: files in, items (with vectors) out.

The whole-image pipeline lives in ``cbir.extraction``; faces, objects and
video frames plug in the same way, each with its own ``name`` (which files
it has read) and ``space`` (which vectors its items are compared with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from cbir.collection.catalog import Item


@dataclass
class SourceResult:
    """What a pipeline made of one file: items, or the reason it was skipped."""

    index: int
    content_hash: str | None
    items: list[Item] = field(default_factory=list)
    error: str | None = None
    unchanged: bool = False


class Pipeline(Protocol):
    """Turns files into items for one vector space."""

    name: str
    space: str

    def accepts(self, path: Path) -> bool:
        """Whether a file found in a folder is meant for this pipeline."""

    def space_record(self) -> tuple[dict, int]:
        """(encoder description, vector dimension) of the space this pipeline fills."""

    def run(
        self, paths: Sequence[Path], known_hashes: Sequence[str | None], batch_size: int, workers: int | None
    ) -> Iterator[list[SourceResult]]:
        """Results for ``paths`` batch by batch; a file whose hash equals its known hash is ``unchanged``."""

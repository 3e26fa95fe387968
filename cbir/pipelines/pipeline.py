"""What a collection needs from a pipeline: files in, sources found, items (with vectors) out.

Each pipeline has a ``kind`` (its name in ``cbir.pipelines.PIPELINES``, which
rebuilds it from a space's record), a ``name`` (whose sources the catalog
keeps apart: ``image``, ``faces``, ``enrol:Ada``) and a ``space`` (which
vectors its items are compared with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol, Sequence

from cbir.pipelines.sources import Source, SourceResult

PRIVATE_RECORD_KEYS = ("salt",)
"""Keys of a space record kept in the collection but never shown (the salt of the medical space's patient keys)."""


def public_record(record: dict) -> dict:
    """A space record as ``info`` and messages may show it: without its private keys."""
    return {key: value for key, value in record.items() if key not in PRIVATE_RECORD_KEYS}


class Pipeline(Protocol):
    """Turns sources into items for one vector space."""

    kind: str
    name: str
    space: str

    def accepts(self, path: Path) -> bool:
        """Whether a file found in a folder is meant for this pipeline."""

    def sources(self, files: Sequence[Path]) -> list[Source]:
        """The sources the accepted files make (one per image file; one per series of slices)."""

    def space_record(self) -> tuple[dict, int]:
        """(encoder record with its ``type``, vector dimension) of the space this pipeline fills;
        ``PIPELINES.create(kind, record=record)`` rebuilds the pipeline from it."""

    def run(
        self, sources: Sequence[Source], known_hashes: Sequence[str | None], batch_size: int, workers: int | None
    ) -> Iterator[list[SourceResult]]:
        """Results for ``sources`` batch by batch; a source whose hash equals its known hash is ``unchanged``."""

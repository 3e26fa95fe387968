"""Sources: what a user points at (an image file today; a video, a DICOM series, a volume, an array
file later), and what a pipeline made of each.

A source has a stable URI, its member files (one for an image, many for a
series) and, once read, a content hash of its members. The catalog keys what
it stores by (source URI, pipeline); a source is read again only when one of
its members changed size or modification time, and encoded again only when
its content hash changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cbir.core.items import Item

Stamp = tuple[tuple[str, int, float], ...]  # (member path, size, mtime) of every member


@dataclass(frozen=True)
class Source:
    """What a pipeline reads as one unit: a URI and its member files, in reading order."""

    uri: str
    members: tuple[Path, ...]

    @classmethod
    def file(cls, path: Path) -> "Source":
        """The usual source: one file, named by its path."""
        return cls(str(path), (path,))

    def stamp(self) -> Stamp:
        """Size and modification time of every member (raises ``OSError`` for a missing one)."""
        stats = [(str(member), os.stat(member)) for member in self.members]
        return tuple((name, stat.st_size, stat.st_mtime) for name, stat in stats)


def file_sources(files: Sequence[Path]) -> list[Source]:
    """One source per file: how image and face pipelines see a folder."""
    return [Source.file(path) for path in files]


@dataclass
class SourceResult:
    """What a pipeline made of one source: items, or the reason it was skipped."""

    index: int
    content_hash: str | None
    items: list[Item] = field(default_factory=list)
    error: str | None = None
    unchanged: bool = False

"""The collection manifest: format, library versions, and one entry per vector space.

A *space* is a set of comparable vectors: one encoder, one dimension, one
FAISS index. Whole images, regions and video frames share the ``image``
space; faces, encoded by a face model, live in their own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from cbir.io.atomic import atomic_write

FORMAT = 1


@dataclass
class SpaceInfo:
    """One vector space: what encodes it, its dimension, its FAISS factory string."""

    encoder: dict
    dim: int
    index: str = "Flat"


@dataclass
class Manifest:
    spaces: dict[str, SpaceInfo] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    def save(self, path: Path) -> None:
        data = {
            "format": self.format,
            "created": self.created,
            "versions": self.versions or library_versions(),
            "spaces": {name: vars(space) for name, space in self.spaces.items()},
        }
        with atomic_write(path) as stream:
            stream.write(json.dumps(data, indent=2, sort_keys=True).encode())

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: collection format {data.get('format')} is not supported (expected {FORMAT})")
        spaces = {name: SpaceInfo(**space) for name, space in data["spaces"].items()}
        return cls(spaces, data["created"], data.get("versions", {}), data["format"])


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the vectors."""
    versions = {}
    for package in ("cbir", "torch", "timm", "faiss-cpu", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions

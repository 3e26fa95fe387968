"""The collection manifest: format, library versions, the default space, and one entry per vector space.

A *space* is a set of comparable vectors: one encoder, one dimension, one
FAISS index searched at one effort. Each space records the pipeline kind that
fills it and its encoder's record (with a ``type``), from which
``cbir.pipelines.PIPELINES`` rebuilds that pipeline. Whole images, regions and
video frames share the ``image`` space; faces, encoded by a face model, live
in their own. The default space is the one a collection was created for:
queries by example go there unless another space is named.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from cbir.io.atomic import atomic_write

FORMAT = 2
IMAGE_ENCODER_TYPE = "cnn"


@dataclass
class SpaceInfo:
    """One vector space: the pipeline kind that fills it, what encodes it, its dimension, its FAISS
    factory string and search effort (IVF nprobe or HNSW efSearch; None: exhaustive or FAISS's own), and
    the store its vectors are searched in (``cbir.collection.vector_store``)."""

    pipeline: str
    encoder: dict
    dim: int
    index: str = "Flat"
    search_effort: int | None = None
    store: str = "faiss"


@dataclass
class Manifest:
    spaces: dict[str, SpaceInfo] = field(default_factory=dict)
    default_space: str = ""
    created: float = field(default_factory=time.time)
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    def save(self, path: Path) -> None:
        data = {
            "format": self.format,
            "created": self.created,
            "versions": self.versions or library_versions(),
            "default_space": self.default_space,
            "spaces": {name: asdict(space) for name, space in self.spaces.items()},
        }
        with atomic_write(path) as stream:
            stream.write(json.dumps(data, indent=2, sort_keys=True).encode())

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        """Read a manifest; one of format 1 is brought up to date in memory but keeps ``format`` 1 until saved
        with ``format = FORMAT``."""
        data = json.loads(path.read_text())
        found = data.get("format")
        if found == 1:
            data = upgrade_format1(data)
        elif found != FORMAT:
            raise ValueError(f"{path}: collection format {found} is not supported (expected {FORMAT} or 1)")
        spaces = {name: SpaceInfo(**space) for name, space in data["spaces"].items()}
        return cls(spaces, data["default_space"], data["created"], data.get("versions", {}), found)


def upgrade_format1(data: dict) -> dict:
    """Format 1 knew two spaces: ``image`` (encoder type ``cnn``, the default) and ``face``; neither
    recorded its pipeline or search effort."""
    spaces = {
        name: {**space, "pipeline": "image" if space["encoder"].get("type") == IMAGE_ENCODER_TYPE else "faces", "search_effort": None}
        for name, space in data["spaces"].items()
    }
    default = "image" if "image" in spaces else next(iter(sorted(spaces)), "")
    return {**data, "spaces": spaces, "default_space": default}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the vectors."""
    versions = {}
    for package in ("cbir", "torch", "timm", "faiss-cpu", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions

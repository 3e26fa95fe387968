"""Batched descriptor extraction: files are read, hashed, decoded and resized,
then run through the network batch by batch.

Where the machine has cores beyond the network's threads, worker processes
decode while the main process runs the network on the previous batch; they
hand over uint8 pixels (a quarter of the bytes of float tensors). The main
process normalises each batch in one pass, straight into the channels-last
layout the network runs in."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cbir.collection.catalog import Item
from cbir.collection.pipeline import SourceResult
from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, Encoder, image_pixels, normalise, resized_size
from cbir.io.images import ImageLoadError, is_image_path, load_image


@dataclass
class Decoded:
    """One file after the worker: its resized H x W x 3 uint8 pixels, or the reason it was skipped."""

    index: int
    content_hash: str | None
    pixels: torch.Tensor | None = None
    width: int = 0
    height: int = 0
    error: str | None = None
    unchanged: bool = False


@dataclass
class ExtractedBatch:
    """Descriptors for the files of one batch that decoded, plus those that did not."""

    decoded: list[Decoded]
    vectors: np.ndarray  # row i belongs to the i-th entry of ``decoded`` with pixels


def content_hash(data: bytes) -> str:
    """The content hash used throughout the catalog."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


class _FileDataset(Dataset):
    def __init__(self, encoder: Encoder, paths: Sequence[Path], known_hashes: Sequence[str | None] | None):
        self.short_side = encoder.spec.image_size
        self.max_aspect = encoder.spec.max_aspect
        self.interpolation = encoder.input_config.interpolation
        self.paths = list(paths)
        self.known_hashes = list(known_hashes) if known_hashes is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Decoded:
        try:
            data = Path(self.paths[index]).read_bytes()
        except OSError as error:
            return Decoded(index, None, error=f"unreadable: {error.strerror or error}")
        digest = content_hash(data)
        if digest == self.known_hashes[index]:
            return Decoded(index, digest, unchanged=True)
        try:
            image = load_image(data, min_side=self.short_side)
        except ImageLoadError as error:
            return Decoded(index, digest, error=str(error))
        pixels = image_pixels(image, resized_size(*image.size, self.short_side, self.max_aspect), self.interpolation)
        return Decoded(index, digest, pixels, *image.info["original_size"])


def _keep_list(batch: list[Decoded]) -> list[Decoded]:
    return batch


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """Decoding worker processes: only on cores that the network's threads leave free.

    Torch's threads wait for each other after every operation, so a worker
    process that takes one of their cores slows the whole forward pass: on 2
    cores, decoding in-process ran Corel photos at 118 images/s against 87
    with a worker, and 12-megapixel JPEGs at 61 against 23
    (bench/results/speed.md, "Decoding").
    """
    return max(0, min(4, available_cores() - torch.get_num_threads()))


def extract(
    encoder: Encoder,
    paths: Sequence[Path],
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    known_hashes: Sequence[str | None] | None = None,
) -> Iterator[ExtractedBatch]:
    """Yield descriptors for ``paths`` batch by batch, in order.

    Files whose hash equals ``known_hashes[i]`` are reported ``unchanged``
    without being decoded.
    """
    workers = default_workers() if workers is None else workers
    if len(paths) <= batch_size:
        workers = 0
    loader = DataLoader(
        _FileDataset(encoder, paths, known_hashes),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_keep_list,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    for batch in loader:
        yield ExtractedBatch(batch, encode_decoded(encoder, batch))


@torch.inference_mode()
def encode_decoded(encoder: Encoder, batch: list[Decoded]) -> np.ndarray:
    """Descriptors of the decoded entries of ``batch`` (same-shaped tensors run together)."""
    ready = [entry for entry in batch if entry.pixels is not None]
    vectors = np.zeros((len(ready), encoder.dim), dtype=np.float32)
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, entry in enumerate(ready):
        groups.setdefault(tuple(entry.pixels.shape), []).append(row)
    for rows in groups.values():
        stacked = normalise(torch.stack([ready[row].pixels for row in rows]), encoder.input_config)
        vectors[rows] = encoder(stacked).numpy()
    return vectors


class ImagePipeline:
    """Whole images: one ``image`` item per file, in the ``image`` space."""

    name = "image"
    space = "image"

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def accepts(self, path: Path) -> bool:
        return is_image_path(path)

    def space_record(self) -> tuple[dict, int]:
        return {"type": "cnn", **self.encoder.spec.to_dict()}, self.encoder.dim

    def run(self, paths, known_hashes, batch_size, workers) -> Iterator[list[SourceResult]]:
        for batch in extract(self.encoder, paths, batch_size, workers, known_hashes):
            rows = iter(batch.vectors)
            results = []
            for entry in batch.decoded:
                result = SourceResult(entry.index, entry.content_hash, error=entry.error, unchanged=entry.unchanged)
                if entry.pixels is not None:
                    uri = str(paths[entry.index])
                    metadata = {"width": entry.width, "height": entry.height}
                    result.items.append(Item("image", uri, next(rows), entry.content_hash, metadata=metadata))
                results.append(result)
            yield results

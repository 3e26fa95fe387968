"""One decoding dataset for every pipeline: read a source's members, hash them, skip the source when
its hash is the known one, else decode it, all in worker processes where cores allow.

A pipeline supplies only its ``decode(source, contents)``: whole images
resize pixels, faces detect and encode faces, frames and slices will cut
their own. A decoder raises ``DecodeError`` (or ``ImageLoadError``) for a
source it cannot use; the source is then reported with that reason, never
aborting the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Iterator, Sequence, TypeVar

from cbir.core.hashing import members_hash
from cbir.core.items import Item
from cbir.io.images import ImageLoadError
from cbir.pipelines.sources import Source, SourceResult

T = TypeVar("T")
MAX_WORKERS = 4


class DecodeError(Exception):
    """A source whose content a pipeline cannot use; the message is the reason reported."""


@dataclass
class Decoded(Generic[T]):
    """One source after the worker: what its decoder made of it, or the reason it was skipped."""

    index: int
    content_hash: str | None
    value: T | None = None
    error: str | None = None
    unchanged: bool = False

    def result(self, make_items: Callable[[T], list[Item]]) -> SourceResult:
        """What the source gave the collection: ``make_items(value)`` when it decoded, else why not."""
        result = SourceResult(self.index, self.content_hash, error=self.error, unchanged=self.unchanged)
        if self.value is not None:
            result.items = make_items(self.value)
        return result


class SourceDataset(Generic[T]):
    """Source ``i`` -> ``Decoded``: its members read and hashed, decoded unless the hash is known (a map-style
    dataset for ``torch.utils.data.DataLoader``)."""

    def __init__(
        self,
        sources: Sequence[Source],
        decode: Callable[[Source, list[bytes]], T],
        known_hashes: Sequence[str | None] | None = None,
    ):
        self.sources = list(sources)
        self.decode = decode
        self.known_hashes = list(known_hashes) if known_hashes is not None else [None] * len(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Decoded[T]:
        source = self.sources[index]
        try:
            contents = [Path(member).read_bytes() for member in source.members]
        except OSError as error:
            return Decoded(index, None, error=f"unreadable: {error.strerror or error}")
        digest = members_hash(contents)
        if digest == self.known_hashes[index]:
            return Decoded(index, digest, unchanged=True)
        try:
            return Decoded(index, digest, self.decode(source, contents))
        except (DecodeError, ImageLoadError) as error:
            return Decoded(index, digest, error=str(error))


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decoding_workers(busy_threads: int) -> int:
    """Worker processes for decoding: one per core that the main process's ``busy_threads`` leave free, up to 4.

    The image pipeline's main process runs the network, whose torch threads
    wait for each other after every operation, so a worker that takes one of
    their cores slows the whole forward pass: on 2 cores, decoding in-process
    ran Corel photos at 118 images/s against 87 with a worker, and 12-megapixel
    JPEGs at 61 against 23 (bench/results/speed.md, "Decoding"). The face
    pipeline analyses faces in the workers and leaves the main process idle
    (``busy_threads`` 0).
    """
    return max(0, min(MAX_WORKERS, available_cores() - busy_threads))


def batches(
    dataset,
    batch_size: int,
    workers: int,
    prefetch: int = 4,
    batch_sampler: Sequence[Sequence] | None = None,
) -> Iterator[list]:
    """The dataset's entries as lists of ``batch_size`` (or as ``batch_sampler`` groups them), in order.

    A single batch is decoded in-process: starting workers would cost more than it saves.
    """
    from torch.utils.data import DataLoader  # workers (and torch) load only when sources are read

    count = len(batch_sampler) if batch_sampler is not None else -(-len(dataset) // batch_size)
    workers = workers if count > 1 else 0
    loader = DataLoader(
        dataset,
        batch_size=batch_size if batch_sampler is None else 1,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=list,
        prefetch_factor=prefetch if workers else None,
    )
    yield from loader

"""Whole images: one ``image`` item per image file, in the ``image`` space.

Workers read, hash, decode and resize files and hand over uint8 pixels (a
quarter of the bytes of float tensors); the main process normalises each
batch in one pass, straight into the channels-last layout the network runs
in, and runs the network on same-shaped groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from cbir.core.items import Item
from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, Encoder, EncoderSpec, image_pixels, normalise, resized_size, shared_encoder
from cbir.io.images import is_image_path, load_image
from cbir.pipelines.batching import group_by_shape
from cbir.pipelines.decoding import Decoded, SourceDataset, batches, decoding_workers
from cbir.pipelines.sources import Source, SourceResult, file_sources

IMAGE_SPACE = "image"
IMAGE_KIND = "image"
ENCODER_TYPE = "cnn"


@dataclass
class Pixels:
    """An image resized for the network (H x W x 3 uint8) and its original size."""

    pixels: torch.Tensor
    width: int
    height: int


class ImageDecoder:
    """Bytes -> ``Pixels``, resized as ``encoder`` expects (picklable, so it runs in workers)."""

    def __init__(self, encoder: Encoder):
        self.short_side = encoder.spec.image_size
        self.max_aspect = encoder.spec.max_aspect
        self.interpolation = encoder.input_config.interpolation

    def __call__(self, source: Source, contents: list[bytes]) -> Pixels:
        image = load_image(contents[0], min_side=self.short_side)
        pixels = image_pixels(image, resized_size(*image.size, self.short_side, self.max_aspect), self.interpolation)
        return Pixels(pixels, *image.info["original_size"])


@dataclass
class ExtractedBatch:
    """Descriptors for the files of one batch that decoded, plus those that did not."""

    decoded: list[Decoded[Pixels]]
    vectors: np.ndarray  # row i belongs to the i-th entry of ``decoded`` with a value


def image_workers() -> int:
    """Decoding workers beside the network: the cores its torch threads leave free."""
    return decoding_workers(busy_threads=torch.get_num_threads())


def extract(
    encoder: Encoder,
    paths: Sequence[Path],
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    known_hashes: Sequence[str | None] | None = None,
) -> Iterator[ExtractedBatch]:
    """Descriptors for image files batch by batch, in order; files whose hash equals
    ``known_hashes[i]`` are reported ``unchanged`` without being decoded."""
    yield from extract_sources(encoder, file_sources(paths), batch_size, workers, known_hashes)


def extract_sources(
    encoder: Encoder,
    sources: Sequence[Source],
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    known_hashes: Sequence[str | None] | None = None,
) -> Iterator[ExtractedBatch]:
    """``extract`` for sources (each one image file)."""
    dataset = SourceDataset(sources, ImageDecoder(encoder), known_hashes)
    for batch in batches(dataset, batch_size, image_workers() if workers is None else workers):
        yield ExtractedBatch(batch, encode_decoded(encoder, batch))


@torch.inference_mode()
def encode_decoded(encoder: Encoder, batch: list[Decoded[Pixels]]) -> np.ndarray:
    """Descriptors of the decoded entries of ``batch`` (same-shaped images run together)."""
    ready = [entry.value.pixels for entry in batch if entry.value is not None]
    vectors = np.zeros((len(ready), encoder.dim), dtype=np.float32)
    for positions, stacked in group_by_shape(ready):
        vectors[positions] = encoder(normalise(stacked, encoder.input_config)).numpy()
    return vectors


class ImagePipeline:
    """Whole images: one ``image`` item per file, in the ``image`` space."""

    kind = "image"
    name = "image"
    space = IMAGE_SPACE

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    @classmethod
    def from_record(cls, record: dict, encoder: Encoder | None = None) -> "ImagePipeline":
        """The pipeline of a space recorded by ``space_record`` (``encoder``: that encoder, already loaded)."""
        return cls(encoder or shared_encoder(EncoderSpec.from_dict(record)))

    def accepts(self, path: Path) -> bool:
        return is_image_path(path)

    def sources(self, files: Sequence[Path]) -> list[Source]:
        return file_sources(files)

    def space_record(self) -> tuple[dict, int]:
        return {"type": ENCODER_TYPE, **self.encoder.spec.to_dict()}, self.encoder.dim

    def encode(self, image: str | Path | Image.Image) -> np.ndarray:
        """The descriptor of one query image (1 x D)."""
        return self.encoder.encode_images([load_image(image, min_side=self.encoder.spec.image_size)])

    def run(self, sources: Sequence[Source], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        for batch in extract_sources(self.encoder, sources, batch_size, workers, known_hashes):
            rows = iter(batch.vectors)
            results = []
            for entry in batch.decoded:
                uri = sources[entry.index].uri
                results.append(entry.result(lambda pixels: [image_item(uri, next(rows), entry.content_hash, pixels)]))
            yield results


def image_item(uri: str, vector: np.ndarray, content_hash: str | None, pixels: Pixels) -> Item:
    """The item of a whole image, with its original size."""
    return Item(IMAGE_KIND, uri, vector, content_hash, metadata={"width": pixels.width, "height": pixels.height})

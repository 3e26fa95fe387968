"""What the trainable part of the network is fed: cached frozen-stage outputs, or live images.

When only the top of the network trains, the frozen stages give the same
output for an image every epoch, so ``CachedFeatures`` computes it once per
view (view 0 plain, the others augmented) and training runs on the cache:
epochs cost a fraction of a full forward pass. When the whole network
trains, ``LiveImages`` decodes and augments images in worker processes as
batches are needed.

Both run as the image pipeline does (``cbir.pipelines.image``): workers
(by the pipelines' worker rule) decode and resize images to uint8 pixels,
the main process normalises each same-shaped group in one pass into the
channels-last layout, and the cache runs the frozen stages rewritten for
inference (batch norms folded, ``cbir.encoders.fusion``). Batches are
groups of same-shaped tensors (images keep their aspect ratio), each with
the positions of its members in the batch (``cbir.pipelines.batching``).
Augmentation is seeded per image and draw (view or epoch) from the run's
seed, so a run gives the same result whatever the number of workers.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cbir.encoders.encoder import Encoder, image_pixels, normalise, resized_size
from cbir.encoders.fusion import fuse_for_inference
from cbir.io.images import ImageLoadError, load_image
from cbir.pipelines.batching import Group, assemble, group_by_shape
from cbir.pipelines.decoding import batches
from cbir.pipelines.image import image_workers
from cbir.training.augment import RetrievalAugmentation
from cbir.training.network import TrainableEncoder

Progress = Callable[[int, int], None]


class _Decoder(Dataset):
    """Item ``(index, draw)`` -> ``(index, H x W x 3 uint8 pixels or None, error or None)``; ``draw`` None is
    the plain image, a number an augmented one seeded by ``(seed, draw, index)``."""

    def __init__(self, sources: Sequence, encoder: Encoder, augmentation: RetrievalAugmentation | None, seed: int = 0):
        self.sources = sources
        self.seed = seed
        self.short_side = encoder.spec.image_size
        self.max_aspect = encoder.spec.max_aspect
        self.interpolation = encoder.input_config.interpolation
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, item: tuple[int, int | None]):
        index, draw = item
        try:
            image = load_image(self.sources[index], min_side=self.short_side)
        except ImageLoadError as error:
            return index, None, str(error)
        if draw is not None and self.augmentation is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, draw, index]).generate_state(1)[0]))
                image = self.augmentation(image)
        return index, self._pixels(image), None

    def _pixels(self, image: Image.Image) -> torch.Tensor:
        return image_pixels(image, resized_size(*image.size, self.short_side, self.max_aspect), self.interpolation)


def _loader(decoder: _Decoder, items: list[list[tuple[int, int | None]]], workers: int | None):
    """Decoded batches of ``(index, draw)`` items, in order."""
    return batches(decoder, 1, image_workers() if workers is None else workers, batch_sampler=items)


def _normalised_groups(pixels: Sequence[torch.Tensor], encoder: Encoder) -> list[Group]:
    """Same-shaped pixels stacked and normalised for the network, one pass per group."""
    return [(positions, normalise(stacked, encoder.input_config)) for positions, stacked in group_by_shape(pixels)]


class TrainingInputs:
    """Common part: embedding a set of images with the current network, plain view, no gradients."""

    def batches(self, index_batches: Sequence[np.ndarray], draw: int | None = None) -> Iterator[list[Group]]:
        """The inputs of each batch of image indices: plain (``draw`` None) or augmented draw ``draw`` (the epoch)."""
        raise NotImplementedError

    def descriptors(self, network: TrainableEncoder, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, network: TrainableEncoder, indices: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        """Descriptors (N x D, on the CPU) of images ``indices``, in order."""
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
        out = []
        for groups in self.batches(chunks):
            out.append(assemble(groups, lambda tensor: self.descriptors(network, tensor)).cpu())
        return torch.cat(out) if out else torch.empty(0, network.encoder.dim)


class CachedFeatures(TrainingInputs):
    """Frozen-stage outputs (float16, in memory) of every image under a few views.

    ``build`` computes view 0 (plain) for all images and reports those that
    cannot be read; ``add_views`` computes augmented views of the training
    images. Both compute only what is not cached yet, so runs that share the
    frozen stages (same backbone, size, trainable layers, seed) can share one
    cache. A training batch draws one random view per image.
    """

    def __init__(self, network: TrainableEncoder, sources: Sequence, device: torch.device,
                 augmentation: RetrievalAugmentation | None, workers: int | None = None, batch_size: int = 32, seed: int = 0):
        self.encoder = network.encoder
        frozen = network.bottom
        self.bottom = fuse_for_inference(copy.deepcopy(frozen).cpu()).to(device) if len(list(frozen.children())) else frozen
        self.decoder = _Decoder(sources, network.encoder, augmentation, seed)
        self.device = device
        self.workers = workers
        self.batch_size = batch_size
        self.seed = seed
        self.views: list[dict[int, torch.Tensor]] = [{}]
        self.broken: dict[int, str] = {}
        self.drawn = 1  # views a training batch draws from

    def build(self, indices: np.ndarray, progress: Progress | None = None) -> dict[int, str]:
        """Cache the plain view of ``indices``; returns {index: reason} for unreadable images."""
        self._compute(self.views[0], indices, draw=None, progress=progress)
        return {int(i): self.broken[int(i)] for i in indices if int(i) in self.broken}

    def add_views(self, indices: np.ndarray, count: int, progress: Progress | None = None) -> None:
        """Cache ``count`` augmented views of ``indices``; a batch then draws from those ``count`` and the plain view."""
        self.views += [{} for _ in range(count + 1 - len(self.views))]
        self.drawn = count + 1
        for view in range(count):
            self._compute(self.views[view + 1], indices, draw=view + 1,
                          progress=(lambda done, total, v=view: progress(v * total + done, count * total)) if progress else None)

    @torch.no_grad()
    def _compute(self, store: dict[int, torch.Tensor], indices: np.ndarray, draw: int | None, progress: Progress | None) -> None:
        indices = np.array([i for i in indices if int(i) not in store and int(i) not in self.broken], dtype=np.int64)
        items = [[(int(i), draw) for i in indices[start : start + self.batch_size]]
                 for start in range(0, len(indices), self.batch_size)]
        done = 0
        for batch in _loader(self.decoder, items, self.workers) if items else ():
            ready = [(index, tensor) for index, tensor, error in batch if tensor is not None]
            self.broken.update({index: error for index, tensor, error in batch if tensor is None})
            if ready:
                for positions, stacked in _normalised_groups([pixels for _, pixels in ready], self.encoder):
                    features = self.bottom(stacked.to(self.device).contiguous(memory_format=torch.channels_last))
                    features = features.to("cpu", torch.float16)
                    for position, feature in zip(positions, features):
                        store[ready[position][0]] = feature.contiguous()
            done += len(batch)
            if progress is not None:
                progress(done, len(indices))

    def batches(self, index_batches: Sequence[np.ndarray], draw: int | None = None) -> Iterator[list[Group]]:
        rng = np.random.default_rng([self.seed, draw or 0])
        for indices in index_batches:
            if draw is not None:
                views = rng.integers(0, self.drawn, size=len(indices))
                tensors = [self.views[v].get(int(i), self.views[0][int(i)]) for i, v in zip(indices, views)]
            else:
                tensors = [self.views[0][int(i)] for i in indices]
            yield group_by_shape(tensors)

    def descriptors(self, network: TrainableEncoder, inputs: torch.Tensor) -> torch.Tensor:
        return network.top_descriptors(inputs.to(self.device, torch.float32))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for view in self.views for t in view.values())


class LiveImages(TrainingInputs):
    """Images decoded (and augmented for training) in worker processes, batch by batch."""

    def __init__(self, encoder: Encoder, sources: Sequence, device: torch.device,
                 augmentation: RetrievalAugmentation | None, workers: int | None = None, seed: int = 0):
        self.encoder = encoder
        self.decoder = _Decoder(sources, encoder, augmentation, seed)
        self.device = device
        self.workers = workers

    def check(self, indices: np.ndarray, batch_size: int = 32, progress: Progress | None = None) -> dict[int, str]:
        """Decode every image once; returns {index: reason} for those that cannot be read."""
        items = [[(int(i), None) for i in indices[start : start + batch_size]] for start in range(0, len(indices), batch_size)]
        broken: dict[int, str] = {}
        done = 0
        for batch in _loader(self.decoder, items, self.workers):
            broken.update({index: error for index, tensor, error in batch if tensor is None})
            done += len(batch)
            if progress is not None:
                progress(done, len(indices))
        return broken

    def batches(self, index_batches: Sequence[np.ndarray], draw: int | None = None) -> Iterator[list[Group]]:
        items = [[(int(i), draw) for i in indices] for indices in index_batches]
        for batch in _loader(self.decoder, items, self.workers):
            yield _normalised_groups([pixels for _, pixels, _ in batch], self.encoder)

    def descriptors(self, network: TrainableEncoder, inputs: torch.Tensor) -> torch.Tensor:
        return network(inputs.to(self.device))

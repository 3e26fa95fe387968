"""Descriptors of image files for evaluation, cached on disk.

Evaluating several post-processing variants of one encoder should encode
each image once. Descriptors are stored per encoder identity (a hash of
everything that decides a vector) and looked up by the image's content hash,
so a renamed or copied file is still found and an edited one is re-encoded.

Several encoders that differ only in their pooling share one backbone pass
(``PoolingGroupEncoder``): the benchmark grid of poolings costs one forward
pass per image size and scale set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from PIL import Image
from torch import nn

from cbir.core.caches import cache_folder
from cbir.core.hashing import content_hash
from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, Encoder, EncoderSpec, file_sha256
from cbir.encoders.pooling import make_pooling
from cbir.io.atomic import atomic_write
from cbir.io.images import ImageLoadError, load_image
from cbir.pipelines.image import extract

CACHE_FORMAT = 1
Box = tuple[float, float, float, float]
ProgressCallback = Callable[[int, int], None]


def default_cache_dir() -> Path:
    """``$CBIR_CACHE/descriptors``, else ``~/.cache/cbir/descriptors``."""
    return cache_folder("descriptors")


@dataclass(frozen=True)
class EncoderChoice:
    """An encoder described by a spec, or a fine-tuned encoder file; built only when needed."""

    spec: EncoderSpec | None = None
    encoder_file: Path | None = None
    _built: list = field(default_factory=list, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if (self.spec is None) == (self.encoder_file is None):
            raise ValueError("choose an encoder by its spec or by an encoder file, not both")

    @classmethod
    def of(cls, spec: EncoderSpec | None = None, encoder_file: str | Path | None = None) -> "EncoderChoice":
        if encoder_file is not None:
            return cls(encoder_file=Path(encoder_file))
        return cls(spec=spec or EncoderSpec())

    def key(self) -> str:
        """A short hash of what decides the vectors."""
        if self.encoder_file is not None:
            identity = {"encoder_file_sha256": file_sha256(self.encoder_file)}
        else:
            identity = self.spec.identity()
        identity["cache_format"] = CACHE_FORMAT
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]

    def describe(self) -> dict:
        """What to print and record in a result's config."""
        if self.encoder_file is not None:
            return {"encoder_file": str(self.encoder_file)}
        spec = self.spec.to_dict()
        return {key: spec[key] for key in ("backbone", "pooling", "gem_p", "image_size", "scales", "weights")}

    def build(self) -> Encoder:
        """The encoder (built once)."""
        if not self._built:
            if self.encoder_file is not None:
                from cbir.encoders.encoder import load_encoder_file

                self._built.append(load_encoder_file(self.encoder_file))
            else:
                self._built.append(Encoder(self.spec).for_inference())
        return self._built[0]


@dataclass(frozen=True)
class ImageRef:
    """An image file, optionally cropped to ``box`` (left, top, right, bottom) in pixels."""

    path: Path
    box: Box | None = None


@dataclass
class Described:
    """Descriptors for the images that could be read, in input order; the others with a reason."""

    vectors: np.ndarray
    kept: np.ndarray  # positions in the input list of the rows of ``vectors``
    skipped: list[tuple[Path, str]]


class DescriptorStore:
    """The cached descriptors of one encoder: content key -> vector, in a .npz file."""

    def __init__(self, cache_dir: Path, encoder_key: str):
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"{encoder_key}.npz"
        self.lock = FileLock(str(cache_dir / f"{encoder_key}.lock"))

    def load(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path) as data:
                return dict(zip(data["keys"].astype(str), data["vectors"]))
        except (OSError, ValueError, KeyError):
            return {}

    def add(self, new: dict[str, np.ndarray]) -> None:
        """Merge ``new`` into the file (under a lock, written atomically)."""
        if not new:
            return
        with self.lock:
            stored = self.load()
            stored.update(new)
            keys = np.array(list(stored), dtype="S")
            vectors = np.stack(list(stored.values())).astype(np.float32)
            with atomic_write(self.path) as stream:
                np.savez(stream, keys=keys, vectors=vectors)


class PoolingGroupEncoder(Encoder):
    """One backbone pass, several poolings: the descriptors of each pooling side by side.

    Gives, column block by column block, exactly what ``Encoder(spec)`` gives
    for each spec of the group (same backbone, weights, size and scales).
    Inference only: its backbone is rewritten for speed (``Encoder.for_inference``).
    """

    def __init__(self, specs: Sequence[EncoderSpec]):
        super().__init__(specs[0])
        self.poolings = nn.ModuleList(make_pooling(s.pooling, s.gem_p, rmac_levels=s.rmac_levels) for s in specs)
        self.for_inference()

    @property
    def dim(self) -> int:
        return self.backbone.channels * len(self.poolings)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        totals: list[torch.Tensor | None] = [None] * len(self.poolings)
        for scale in self.spec.scales:
            scaled = batch
            if scale != 1.0:
                height, width = batch.shape[-2:]
                size = (max(32, round(height * scale)), max(32, round(width * scale)))
                scaled = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
            features = self.backbone(scaled.contiguous(memory_format=torch.channels_last))
            for position, pooling in enumerate(self.poolings):
                descriptor = F.normalize(pooling(features).float(), dim=-1)
                totals[position] = descriptor if totals[position] is None else totals[position] + descriptor
        return torch.cat([F.normalize(total, dim=-1) for total in totals], dim=1)


POOLING_FIELDS = ("pooling", "gem_p", "rmac_levels")


def group_key(spec: EncoderSpec) -> tuple | None:
    """What specs must share to run through one backbone pass; None for a spec that must run alone
    (anything beyond backbone, weights, size and scales, such as a fine-tuned checkpoint)."""
    plain = EncoderSpec(
        backbone=spec.backbone, weights=spec.weights, weights_sha256=spec.weights_sha256,
        image_size=spec.image_size, max_aspect=spec.max_aspect, scales=spec.scales,
    )
    shared = {key: value for key, value in spec.identity().items() if key not in POOLING_FIELDS}
    if shared != {key: value for key, value in plain.identity().items() if key not in POOLING_FIELDS}:
        return None
    return tuple(sorted((key, str(value)) for key, value in shared.items()))


def image_keys(refs: Sequence[ImageRef]) -> tuple[list[str | None], list[tuple[Path, str]]]:
    """Cache keys (content hash, plus the crop box) of each image; None with a reason when unreadable."""
    keys: list[str | None] = []
    unreadable = []
    for ref in refs:
        try:
            digest = content_hash(Path(ref.path).read_bytes())
        except OSError as error:
            keys.append(None)
            unreadable.append((ref.path, f"unreadable: {error.strerror or error}"))
            continue
        keys.append(digest if ref.box is None else f"{digest}@{','.join(f'{v:.1f}' for v in ref.box)}")
    return keys, unreadable


def describe_images(
    choices: Sequence[EncoderChoice],
    refs: Sequence[ImageRef | Path],
    cache_dir: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[Described]:
    """Descriptors of ``refs`` for each encoder choice, encoding only what the cache lacks.

    With ``cache_dir`` None the default cache is used. Unreadable or corrupt
    images are skipped (the same ones for every choice) and reported.
    """
    refs = [ref if isinstance(ref, ImageRef) else ImageRef(Path(ref)) for ref in refs]
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    keys, skipped = image_keys(refs)
    stores = [DescriptorStore(cache_dir, choice.key()) for choice in choices]
    cached = [store.load() for store in stores]
    missing = [
        [position for position, key in enumerate(keys) if key is not None and key not in known] for known in cached
    ]
    errors: dict[int, str] = {}
    groups = [(group, sorted({p for i in group for p in missing[i]})) for group in _groups(choices, missing)]
    total = sum(len(positions) for _, positions in groups)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    for group, positions in groups:
        encoder = _group_encoder([choices[i] for i in group])
        vectors, failed = _encode_refs(encoder, [refs[p] for p in positions], batch_size, workers, advance)
        for row, position in enumerate(positions):
            if row in failed:
                errors[position] = failed[row]
        width = vectors.shape[1] // len(group)
        for block, choice_index in enumerate(group):
            new = {
                keys[position]: vectors[row, block * width : (block + 1) * width]
                for row, position in enumerate(positions)
                if row not in failed
            }
            stores[choice_index].add(new)
            cached[choice_index].update(new)
    skipped += [(refs[position].path, reason) for position, reason in sorted(errors.items())]
    kept = np.array([p for p, key in enumerate(keys) if key is not None and p not in errors], dtype=np.int64)
    results = []
    for known in cached:
        rows = [known[keys[p]] for p in kept]
        vectors = np.stack(rows).astype(np.float32) if rows else np.empty((0, 0), np.float32)
        results.append(Described(vectors, kept, skipped))
    return results


def describe(
    choice: EncoderChoice,
    refs: Sequence[ImageRef | Path],
    cache_dir: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Described:
    """Descriptors of ``refs`` for one encoder (see ``describe_images``)."""
    return describe_images([choice], refs, cache_dir, batch_size, workers, progress)[0]


def _groups(choices: Sequence[EncoderChoice], missing: list[list[int]]) -> list[list[int]]:
    """Indices of choices that need encoding, grouped so that each group shares a backbone pass."""
    groups: dict[object, list[int]] = {}
    for index, choice in enumerate(choices):
        if not missing[index]:
            continue
        key = group_key(choice.spec) if choice.spec is not None else None
        groups.setdefault(key if key is not None else ("alone", index), []).append(index)
    return list(groups.values())


def _group_encoder(choices: list[EncoderChoice]) -> Encoder:
    if len(choices) == 1:
        return choices[0].build()
    return PoolingGroupEncoder([choice.spec for choice in choices])


def _encode_refs(
    encoder: Encoder, refs: list[ImageRef], batch_size: int, workers: int | None, advance: Callable[[int], None]
) -> tuple[np.ndarray, dict[int, str]]:
    """Vectors for ``refs`` (rows of failures are zero) and {row: reason} for the failures."""
    vectors = np.zeros((len(refs), encoder.dim), dtype=np.float32)
    failed: dict[int, str] = {}
    whole = [row for row, ref in enumerate(refs) if ref.box is None]
    cropped = [row for row, ref in enumerate(refs) if ref.box is not None]
    if whole:
        for batch in extract(encoder, [refs[row].path for row in whole], batch_size, workers):
            rows = iter(batch.vectors)
            for entry in batch.decoded:
                if entry.value is None:
                    failed[whole[entry.index]] = entry.error or "could not be decoded"
                else:
                    vectors[whole[entry.index]] = next(rows)
            advance(len(batch.decoded))
    for row in cropped:
        try:
            vectors[row] = encoder.encode_images([crop(refs[row])])[0]
        except ImageLoadError as error:
            failed[row] = str(error)
        advance(1)
    return vectors, failed


def crop(ref: ImageRef) -> Image.Image:
    """The image of ``ref``, cropped to its box (clipped to the picture)."""
    image = load_image(ref.path)
    if ref.box is None:
        return image
    left, top, right, bottom = ref.box
    left, top = max(0, int(round(left))), max(0, int(round(top)))
    right, bottom = min(image.width, int(round(right))), min(image.height, int(round(bottom)))
    if right - left < 2 or bottom - top < 2:
        raise ImageLoadError(f"query box {ref.box} leaves no picture inside {image.width}x{image.height}")
    return image.crop((left, top, right, bottom))

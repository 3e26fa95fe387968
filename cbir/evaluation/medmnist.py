"""The MedMNIST retrieval protocol of Mahbod et al. 2024 (arXiv 2409.09430).

Every image of the query split (``test``) searches the ``train`` split by
cosine similarity. Per query, from the labels of its first results:

* ACC@k (k = 1, 3, 5): 1 when any of the first k has the query's label;
* mMV@5: 1 when the majority label of the first 5 is the query's label (a tie
  counts when the query's label is among the tied, as in the authors' code);
* mAP@5: the precision at each correct result among the first 5, averaged
  over those results (0 when none is correct);
* mAP: the usual average precision over the whole ranking (not in the paper).

Images are arrays, not files, so they are encoded here (in memory, through
the same per-encoder descriptor cache as files, keyed by the array's bytes).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from cbir.encoders.encoder import DEFAULT_BATCH_SIZE
from cbir.evaluation import metrics
from cbir.evaluation.benchmark import EvaluationResult, LabelTruth, QueryScores, score_queries
from cbir.evaluation.descriptors import (
    DescriptorStore, EncoderChoice, PoolingGroupEncoder, ProgressCallback, default_cache_dir, group_key,
)
from cbir.io.medmnist import MedMNISTSplit, array_to_image, read_medmnist

CUTOFFS = (1, 3, 5)
VOTE_K = 5


def evaluate_medmnist(
    path: str | Path,
    choice: EncoderChoice,
    query_split: str = "test",
    database_split: str = "train",
    cache_dir: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Measure ``choice`` on a MedMNIST file: ``query_split`` images search ``database_split``."""
    if query_split == database_split:
        raise ValueError(f"the queries and the database are both the {query_split!r} split: choose another --split")
    queries, database = read_medmnist(path, query_split), read_medmnist(path, database_split)
    query_labels, database_labels = queries.class_labels(), database.class_labels()
    started = time.perf_counter()
    query_vectors, database_vectors = encode_splits([choice], [queries, database], cache_dir, batch_size, progress)[0]
    seconds = {"encoding": time.perf_counter() - started}
    step = time.perf_counter()
    truth = {"": LabelTruth(query_labels, database_labels)}
    scores, top, top_scores = score_queries(query_vectors, database_vectors, truth, None, CUTOFFS)
    votes = metrics.majority_vote_hits(database_labels[top[:, :VOTE_K]], query_labels)
    seconds["ranking"] = time.perf_counter() - step
    config = {
        "encoder": choice.describe(),
        "data": str(path),
        "split": f"{query_split} images query the {database_split} split",
        "queries": len(queries),
        "database": len(database),
        "classes": int(len(np.unique(database_labels))),
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
    }
    return EvaluationResult(
        "medmnist", summarise(scores[""], votes), config, scores=scores,
        query_vectors=query_vectors, database_vectors=database_vectors, top=top, top_scores=top_scores,
    )


def summarise(scores: QueryScores, votes: np.ndarray) -> dict[str, float]:
    """ACC@1/3/5, mMV@5, mAP@5 (Mahbod et al.) and the full-ranking mAP, in percent."""
    summary = {f"ACC@{k}": scores.mean(scores.recall[k]) for k in CUTOFFS}
    summary[f"mMV@{VOTE_K}"] = 100.0 * float(np.mean(votes))
    summary[f"mAP@{VOTE_K}"] = scores.mean(scores.average_precision_at[VOTE_K])
    summary["mAP"] = scores.mean(scores.average_precision)
    return summary


def encode_splits(
    choices: Sequence[EncoderChoice],
    splits: Sequence[MedMNISTSplit],
    cache_dir: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> list[list[np.ndarray]]:
    """Descriptors of every image of each split for each encoder choice (``[choice][split]``).

    Only what the cache lacks is encoded; choices that differ only in their
    pooling share one backbone pass.
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    stores = [DescriptorStore(cache_dir, choice.key()) for choice in choices]
    known = [store.load() for store in stores]
    keys = [[array_key(image) for image in split.images] for split in splits]
    where: dict[str, tuple[int, int]] = {}
    for position, split_keys in enumerate(keys):
        for index, key in enumerate(split_keys):
            where.setdefault(key, (position, index))
    work = []
    for group in _shared_passes(choices):
        missing = [key for key in where if any(key not in known[i] for i in group)]
        if missing:
            work.append((group, missing))
    total, done = sum(len(missing) for _, missing in work), 0
    for group, missing in work:
        encoder = choices[group[0]].build() if len(group) == 1 else PoolingGroupEncoder([choices[i].spec for i in group])
        width = encoder.dim // len(group)
        new: list[dict[str, np.ndarray]] = [{} for _ in group]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            vectors = encoder.encode_images([array_to_image(splits[where[key][0]].images[where[key][1]]) for key in chunk])
            for block in range(len(group)):
                new[block].update(zip(chunk, vectors[:, block * width : (block + 1) * width]))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        for block, choice_index in enumerate(group):
            stores[choice_index].add(new[block])
            known[choice_index].update(new[block])
    return [[np.stack([table[key] for key in split_keys]).astype(np.float32) for split_keys in keys] for table in known]


def _shared_passes(choices: Sequence[EncoderChoice]) -> list[list[int]]:
    """Indices of the choices grouped by what may share one backbone pass."""
    groups: dict[object, list[int]] = {}
    for index, choice in enumerate(choices):
        key = group_key(choice.spec) if choice.spec is not None else None
        groups.setdefault(("alone", index) if key is None else key, []).append(index)
    return list(groups.values())


def array_key(image: np.ndarray) -> str:
    """Cache key of an image array: a hash of its shape, type and bytes."""
    digest = hashlib.blake2b(f"{image.shape}{image.dtype}".encode(), digest_size=20)
    digest.update(np.ascontiguousarray(image).tobytes())
    return f"array:{digest.hexdigest()}"

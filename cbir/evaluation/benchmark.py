"""Running a retrieval benchmark: encode, post-process, rank, judge, summarise.

A ``Benchmark`` is what a protocol reader produces: database and query
images, the ground truth of each query (one or several *setups*, as the
Easy/Medium/Hard of the revisited Oxford/Paris), which database item each
query must not see (its own image in leave-one-out protocols), and how the
per-query numbers become the protocol's metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cbir.encoders.encoder import DEFAULT_BATCH_SIZE
from cbir.encoders.whitening import PCAWhitening
from cbir.evaluation import metrics
from cbir.evaluation.descriptors import EncoderChoice, ImageRef, ProgressCallback, describe_images
from cbir.io.images import is_image_path
from cbir.search.ranking import full_ranking, query_chunks
from cbir.search.reranking import Reranking

RECALL_LEVELS = np.linspace(0.0, 1.0, 101)
TOP_KEPT = 20


class LabelTruth:
    """Positives are the database items with the query's label."""

    def __init__(self, query_labels: Sequence, database_labels: Sequence):
        self.query_labels = np.asarray(query_labels)
        self.database_labels = np.asarray(database_labels)

    def judgement(self, rows: slice) -> np.ndarray:
        same = self.query_labels[rows, None] == self.database_labels[None, :]
        return np.where(same, metrics.POSITIVE, metrics.NEGATIVE).astype(np.int8)

    def subset(self, queries: np.ndarray, database: np.ndarray) -> "LabelTruth":
        return LabelTruth(self.query_labels[queries], self.database_labels[database])


class ListTruth:
    """Explicit positive and junk database indices per query (Oxford/Paris ground truth)."""

    def __init__(self, positives: Sequence[Sequence[int]], junk: Sequence[Sequence[int]], n_database: int):
        self.positives = [np.asarray(p, dtype=np.int64) for p in positives]
        self.junk = [np.asarray(j, dtype=np.int64) for j in junk]
        self.n_database = n_database

    def judgement(self, rows: slice) -> np.ndarray:
        indices = range(len(self.positives))[rows]
        table = np.full((len(indices), self.n_database), metrics.NEGATIVE, dtype=np.int8)
        for row, query in enumerate(indices):
            table[row, self.junk[query]] = metrics.JUNK
            table[row, self.positives[query]] = metrics.POSITIVE
        return table

    def subset(self, queries: np.ndarray, database: np.ndarray) -> "ListTruth":
        new_index = np.full(self.n_database, -1, dtype=np.int64)
        new_index[database] = np.arange(len(database))

        def remap(values: np.ndarray) -> np.ndarray:
            mapped = new_index[values]
            return mapped[mapped >= 0]

        return ListTruth(
            [remap(self.positives[q]) for q in queries], [remap(self.junk[q]) for q in queries], len(database)
        )


GroundTruth = LabelTruth | ListTruth
Summary = Callable[[dict[str, "QueryScores"]], dict[str, float]]


@dataclass
class QueryScores:
    """Per-query numbers for one ground-truth setup (NaN where a query has no positive)."""

    n_positive: np.ndarray
    average_precision: np.ndarray
    trapezoid_average_precision: np.ndarray
    map_at_r: np.ndarray
    precision: dict[int, np.ndarray]
    hits: dict[int, np.ndarray]
    recall: dict[int, np.ndarray]
    average_precision_at: dict[int, np.ndarray]
    revisited_precision: dict[int, np.ndarray]
    pr_curve: np.ndarray  # queries x RECALL_LEVELS
    top_correct: np.ndarray  # queries x TOP_KEPT: judgement of the top results

    def mean(self, values: np.ndarray) -> float:
        """Mean over the queries that have positives, in percent."""
        valid = self.n_positive > 0
        return 100.0 * float(np.nanmean(values[valid])) if valid.any() else float("nan")


@dataclass
class Benchmark:
    """Everything a protocol defines about one evaluation."""

    protocol: str
    database: list[ImageRef]
    queries: list[ImageRef]
    truths: dict[str, GroundTruth]
    summarise: Summary
    ks: tuple[int, ...] = (1, 5, 10)
    exclude: np.ndarray | None = None  # database index hidden from each query, or -1
    query_labels: np.ndarray | None = None
    database_labels: np.ndarray | None = None
    class_names: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


@dataclass
class WhiteningPlan:
    """Learn PCA-whitening on other images (a folder, or a list of files), else on the evaluated
    database; keep ``dim`` dimensions. ``name`` describes the source in the results."""

    source: Path | Sequence[Path] | None = None
    dim: int | None = None
    name: str | None = None


@dataclass
class EvaluationResult:
    """Metrics in percent (names as in the papers), configuration, and what a report needs."""

    protocol: str
    metrics: dict[str, float]
    config: dict
    notes: list[str] = field(default_factory=list)
    scores: dict[str, QueryScores] = field(default_factory=dict)
    benchmark: Benchmark | None = None
    query_vectors: np.ndarray | None = None
    database_vectors: np.ndarray | None = None
    top: np.ndarray | None = None  # queries x TOP_KEPT database indices
    top_scores: np.ndarray | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The ``--json`` document."""
        return {
            "protocol": self.protocol,
            "metrics": {name: round(value, 4) for name, value in self.metrics.items()},
            "config": self.config,
            "notes": self.notes,
            "skipped": [{"file": str(path), "reason": reason} for path, reason in self.skipped],
        }


def image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")
    files = sorted(path for path in folder.rglob("*") if path.is_file() and is_image_path(path))
    if not files:
        raise ValueError(f"no image files under {folder}")
    return files


def evaluate(
    benchmark: Benchmark,
    choice: EncoderChoice,
    reranking: Reranking = Reranking(),
    whitening: WhiteningPlan | None = None,
    cache_dir: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Encode (through the descriptor cache), post-process, rank and score ``benchmark``."""
    started = time.perf_counter()
    encoded = _encode(benchmark, choice, cache_dir, batch_size, workers, progress)
    queries, database = encoded.queries, encoded.database
    notes: list[str] = []
    config = {"encoder": choice.describe(), **benchmark.config}
    seconds = {"encoding": time.perf_counter() - started}
    if whitening is not None:
        step = time.perf_counter()
        learned, config["whitening"], note = _learn_whitening(whitening, choice, database, cache_dir, batch_size, workers)
        database, queries = learned.apply(database), learned.apply(queries)
        notes += [note] if note else []
        seconds["whitening"] = time.perf_counter() - step
    step = time.perf_counter()
    exclude = _exclusions(benchmark, encoded)
    queries, database = reranking.apply(queries, database, exclude)
    config.update(reranking.describe())
    truths = {name: truth.subset(encoded.query_rows, encoded.database_rows) for name, truth in benchmark.truths.items()}
    scores, top, top_scores = score_queries(queries, database, truths, exclude, benchmark.ks)
    seconds["ranking"] = time.perf_counter() - step
    config.update({"queries": int(len(queries)), "database": int(len(database))})
    config["seconds"] = {name: round(value, 3) for name, value in seconds.items()}
    if encoded.skipped:
        notes.append(f"{len(encoded.skipped)} images could not be read and were left out")
    return EvaluationResult(
        benchmark.protocol, benchmark.summarise(scores), config, notes, scores=scores,
        benchmark=_kept(benchmark, truths, encoded), query_vectors=queries, database_vectors=database,
        top=top, top_scores=top_scores, skipped=encoded.skipped,
    )


@dataclass
class _Encoded:
    """Descriptors of the benchmark's readable queries and database images, with their positions."""

    queries: np.ndarray
    database: np.ndarray
    query_rows: np.ndarray
    database_rows: np.ndarray
    skipped: list[tuple[Path, str]]


def _encode(benchmark: Benchmark, choice: EncoderChoice, cache_dir, batch_size, workers, progress) -> _Encoded:
    refs = list(dict.fromkeys(benchmark.database + benchmark.queries))
    described = describe_images([choice], refs, cache_dir, batch_size, workers, progress)[0]
    row_of = {refs[position]: row for row, position in enumerate(described.kept)}
    database_rows = np.array([i for i, ref in enumerate(benchmark.database) if ref in row_of], dtype=np.int64)
    query_rows = np.array([i for i, ref in enumerate(benchmark.queries) if ref in row_of], dtype=np.int64)
    if not len(database_rows) or not len(query_rows):
        raise ValueError(f"no usable images: {len(described.skipped)} could not be read")
    return _Encoded(
        described.vectors[[row_of[benchmark.queries[i]] for i in query_rows]],
        described.vectors[[row_of[benchmark.database[i]] for i in database_rows]],
        query_rows, database_rows, described.skipped,
    )


def _exclusions(benchmark: Benchmark, encoded: _Encoded) -> np.ndarray | None:
    """The benchmark's hidden database item of each query, renumbered after unreadable images left."""
    if benchmark.exclude is None:
        return None
    renumbered = np.full(len(benchmark.database), -1, dtype=np.int64)
    renumbered[encoded.database_rows] = np.arange(len(encoded.database_rows))
    hidden = benchmark.exclude[encoded.query_rows]
    return np.where(hidden >= 0, renumbered[np.maximum(hidden, 0)], -1)


def _learn_whitening(plan, choice, database, cache_dir, batch_size, workers) -> tuple[PCAWhitening, dict, str | None]:
    if plan.source is None:
        learned = PCAWhitening.learn(database, plan.dim)
        note = (
            "whitening was learned on the evaluated images themselves, which flatters the result; "
            "pass --whiten-on DIR to learn it on other images"
        )
        return learned, {"learned_on": "the evaluated database itself", "images": len(database), "dim": learned.dim}, note
    files = image_files(plan.source) if isinstance(plan.source, (str, Path)) else list(plan.source)
    training = describe_images([choice], files, cache_dir, batch_size, workers)[0].vectors
    learned = PCAWhitening.learn(training, plan.dim)
    name = plan.name or str(plan.source)
    return learned, {"learned_on": name, "images": int(len(training)), "dim": learned.dim}, None


def _kept(benchmark: Benchmark, truths: dict[str, GroundTruth], encoded: _Encoded) -> Benchmark:
    """The benchmark restricted to the images that could be read."""

    def pick(values, rows):
        return None if values is None else np.asarray(values)[rows]

    return Benchmark(
        benchmark.protocol,
        [benchmark.database[i] for i in encoded.database_rows],
        [benchmark.queries[i] for i in encoded.query_rows],
        truths,
        benchmark.summarise,
        ks=benchmark.ks,
        query_labels=pick(benchmark.query_labels, encoded.query_rows),
        database_labels=pick(benchmark.database_labels, encoded.database_rows),
        class_names=benchmark.class_names,
        config=benchmark.config,
    )


def score_queries(
    queries: np.ndarray,
    database: np.ndarray,
    truths: dict[str, GroundTruth],
    exclude: np.ndarray | None,
    ks: Sequence[int],
) -> tuple[dict[str, QueryScores], np.ndarray, np.ndarray]:
    """Per-query metrics for each ground-truth setup, plus the top results of every query."""
    parts: dict[str, list[QueryScores]] = {name: [] for name in truths}
    kept = min(TOP_KEPT, len(database))
    top = np.empty((len(queries), kept), dtype=np.int64)
    top_scores = np.empty((len(queries), kept), dtype=np.float32)
    for rows in query_chunks(len(queries), len(database)):
        hidden = None if exclude is None else exclude[rows]
        ranking = full_ranking(queries[rows], database, hidden)
        top[rows] = ranking[:, :kept]
        top_scores[rows] = np.einsum("qd,qkd->qk", queries[rows], database[ranking[:, :kept]])
        for name, truth in truths.items():
            judgement = truth.judgement(rows)
            if hidden is not None:
                own = np.flatnonzero(hidden >= 0)
                judgement[own, hidden[own]] = metrics.JUNK
            parts[name].append(_scores(ranking, judgement, ks, kept))
    return {name: _concatenate(chunks) for name, chunks in parts.items()}, top, top_scores


def _scores(ranking: np.ndarray, judgement: np.ndarray, ks: Sequence[int], kept: int) -> QueryScores:
    hits = metrics.ranked_hits(ranking, judgement)
    return QueryScores(
        n_positive=hits.n_positive,
        average_precision=metrics.average_precision(hits),
        trapezoid_average_precision=metrics.trapezoid_average_precision(hits),
        map_at_r=metrics.map_at_r(hits),
        precision={k: metrics.precision_at_k(hits, k) for k in ks},
        hits={k: metrics.hits_at_k(hits, k) for k in ks},
        recall={k: metrics.recall_at_k(hits, k) for k in ks},
        average_precision_at={k: metrics.average_precision_at_k(hits, k) for k in ks},
        revisited_precision={k: metrics.revisited_precision_at_k(hits, k) for k in ks},
        pr_curve=metrics.interpolated_precision(hits, RECALL_LEVELS),
        top_correct=np.take_along_axis(judgement, ranking[:, :kept], axis=1),
    )


def _concatenate(chunks: list[QueryScores]) -> QueryScores:
    def join(name: str):
        first = getattr(chunks[0], name)
        if isinstance(first, dict):
            return {k: np.concatenate([getattr(c, name)[k] for c in chunks]) for k in first}
        return np.concatenate([getattr(c, name) for c in chunks])

    return QueryScores(**{name: join(name) for name in QueryScores.__dataclass_fields__})

"""The similar-cases report of a MedMNIST evaluation: a few test images, each beside its most and
least similar training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cbir.evaluation.benchmark import EvaluationResult
from cbir.io.medmnist import array_to_image, read_medmnist
from cbir.medical.report import Case, SimilarCases, most_and_least, write_report_page, write_similar_cases

PICTURE_SIDE = 112


def write_medmnist_report(
    result: EvaluationResult,
    path: str | Path,
    query_split: str,
    database_split: str,
    folder: str | Path,
    queries: int = 6,
    k: int = 5,
) -> Path:
    """Write the pictures, ``index.html`` and ``report.json`` for ``queries`` evenly spaced query images."""
    if result.query_vectors is None or result.database_vectors is None:
        raise ValueError("the evaluation result holds no descriptors to report on")
    query_data, database_data = read_medmnist(path, query_split), read_medmnist(path, database_split)
    query_labels, database_labels = query_data.class_labels(), database_data.class_labels()
    picks = np.unique(np.linspace(0, len(query_data) - 1, max(1, min(queries, len(query_data)))).round().astype(int))
    entries = []
    for query in picks:
        similarities = result.database_vectors @ result.query_vectors[query]
        most, least = most_and_least(similarities, k)

        def case(index: int, score: float | None = None, split=database_data, labels=database_labels) -> Case:
            picture = array_to_image(split.images[index]).resize((PICTURE_SIDE, PICTURE_SIDE))
            return Case(picture, f"{split.name}[{index}]", f"class {labels[index]}", score)

        cases = SimilarCases(
            case(int(query), split=query_data, labels=query_labels),
            [case(int(i), float(similarities[i])) for i in most],
            [case(int(i), float(similarities[i])) for i in least],
        )
        picture, _ = write_similar_cases(cases, folder, f"{query_split}_{query}")
        entries.append((cases, picture))
    encoder = ", ".join(f"{key} {value}" for key, value in result.config["encoder"].items() if value is not None)
    notes = [
        f"{Path(path).name}: {query_split} images searching the {len(database_data)} {database_split} images by cosine similarity.",
        f"Encoder: {encoder}. Metrics: " + ", ".join(f"{name} {value:.1f}" for name, value in result.metrics.items()) + ".",
        "Frames: green, same label as the query; red, another label.",
    ]
    return write_report_page(entries, folder, f"Most and least similar cases: {Path(path).name}", notes)

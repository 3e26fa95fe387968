"""An HTML report of one evaluation: metrics, precision-recall curve, AP per class,
sample queries with their results marked correct or wrong, and a 2-D map of the embeddings."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from cbir.collection.collection import SearchResult
from cbir.evaluation import metrics
from cbir.evaluation.benchmark import RECALL_LEVELS, EvaluationResult, ListTruth
from cbir.evaluation.descriptors import crop
from cbir.fonts import matplotlib_families
from cbir.io.images import ImageLoadError
from cbir.visualize import result_grid

SAMPLE_QUERIES = 6
RESULTS_SHOWN = 8
TSNE_LIMIT = 3000


def write_report(result: EvaluationResult, folder: str | Path, on_step: Callable[[str], None] | None = None) -> Path:
    """Write ``index.html`` and its pictures into ``folder``; returns the page's path.

    ``on_step`` is told what is being drawn before each part (the embedding map can take a while).
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    step = on_step or (lambda description: None)
    with matplotlib.rc_context({"font.family": matplotlib_families(_names_shown(result))}):
        sections = [_metrics_section(result)]
        step("precision-recall curve")
        sections.append(_figure(folder, "precision_recall.png", _precision_recall(result), "Precision-recall (interpolated, mean over queries)"))
        step("AP per class or query")
        per_group = _ap_per_group(result)
        if per_group is not None:
            sections.append(_figure(folder, "ap_per_group.png", per_group[0], per_group[1]))
        step(f"up to {SAMPLE_QUERIES} sample queries with their results")
        sections.append(_samples_section(result, folder))
        if result.database_vectors is not None and len(result.database_vectors) >= 5:
            step(f"map of {len(result.database_vectors)} database embeddings")
        embedding_map = _embedding_map(result)
        if embedding_map is not None:
            sections.append(_figure(folder, "embedding_map.png", embedding_map[0], embedding_map[1]))
    page = folder / "index.html"
    title = html.escape(f"cbir evaluate {result.protocol}")
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
        f"<body><h1>{title}</h1>{''.join(sections)}</body></html>"
    )
    return page


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}"
    "td.v{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}"
    "pre{background:#f6f6f6;padding:.8em;overflow-x:auto}.note{color:#a05a00}"
)


def _names_shown(result: EvaluationResult) -> list[str]:
    """Class and query names that the figures may write."""
    benchmark = result.benchmark
    if benchmark is None:
        return []
    return [str(name) for name in benchmark.class_names.values()] + [ref.path.stem for ref in benchmark.queries]


def _metrics_section(result: EvaluationResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='v'>{value:.3f}</td></tr>" if name == "N-S"
        else f"<tr><td>{html.escape(name)}</td><td class='v'>{value:.2f}</td></tr>"
        for name, value in result.metrics.items()
    )
    notes = "".join(f"<p class='note'>{html.escape(note)}</p>" for note in result.notes)
    config = html.escape(json.dumps(result.config, indent=2))
    skipped = ""
    if result.skipped:
        items = "".join(f"<li>{html.escape(str(path))}: {html.escape(reason)}</li>" for path, reason in result.skipped)
        skipped = f"<h3>Skipped images</h3><ul>{items}</ul>"
    return f"<h2>Metrics</h2><table>{rows}</table>{notes}<h3>Configuration</h3><pre>{config}</pre>{skipped}"


def _figure(folder: Path, name: str, figure, caption: str) -> str:
    figure.savefig(folder / name, dpi=110, bbox_inches="tight")
    return f"<h2>{html.escape(caption)}</h2><img src='{name}' alt='{html.escape(caption)}'>"


def _precision_recall(result: EvaluationResult):
    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    for setup, scores in result.scores.items():
        valid = scores.n_positive > 0
        curve = np.nanmean(scores.pr_curve[valid], axis=0)
        label = f"{setup + ' ' if setup else ''}mAP {scores.mean(scores.average_precision):.1f}"
        axes.plot(RECALL_LEVELS, curve, label=label)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    return figure


def _ap_per_group(result: EvaluationResult):
    """Mean AP per class when queries have labels, else AP per query."""
    setup, scores = next(iter(result.scores.items()))
    ap = scores.trapezoid_average_precision if result.protocol in ("oxford", "holidays") else scores.average_precision
    labels = result.benchmark.query_labels if result.benchmark is not None else None
    if labels is not None and len(np.unique(labels)) <= 60:
        classes = sorted(np.unique(labels), key=str)
        values = [100 * float(np.nanmean(ap[labels == c])) for c in classes]
        names = [str(result.benchmark.class_names.get(str(c), c)) for c in classes]
        caption = "Mean AP per class"
    elif labels is None and len(ap) <= 80:
        values = [100 * float(v) for v in ap]
        names = [ref.path.stem for ref in result.benchmark.queries]
        caption = f"AP per query{' (' + setup + ')' if setup else ''}"
    else:
        return None
    figure = Figure(figsize=(max(6, 0.28 * len(values) + 2), 4))
    axes = figure.subplots()
    axes.bar(range(len(values)), values, color="#4a78c2")
    axes.set_xticks(range(len(values)), names, rotation=60 if len(values) > 8 else 0, ha="right" if len(values) > 8 else "center", fontsize=8)
    axes.set(ylabel="AP (%)", ylim=(0, 100))
    axes.grid(axis="y", alpha=0.3)
    return figure, caption


def _samples_section(result: EvaluationResult, folder: Path) -> str:
    """Queries from worst to best AP, each with its first results framed green (positive) or red."""
    benchmark = result.benchmark
    setup, scores = next(iter(result.scores.items()))
    ap = np.nan_to_num(scores.average_precision, nan=-1.0)
    order = np.argsort(ap, kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, min(SAMPLE_QUERIES, len(order))).round().astype(int))]
    parts = []
    for number, query in enumerate(picks):
        judged = scores.top_correct[query]
        shown = [i for i in range(len(judged)) if judged[i] != metrics.JUNK][:RESULTS_SHOWN]
        hits = [
            SearchResult(rank + 1, float(result.top_scores[query, i]), int(result.top[query, i]),
                         str(benchmark.database[result.top[query, i]].path), "image")
            for rank, i in enumerate(shown)
        ]
        try:
            picture = crop(benchmark.queries[query])
        except ImageLoadError:
            continue
        name = f"query_{number}.png"
        result_grid(picture, hits, folder / name, thumb=130, columns=RESULTS_SHOWN + 1,
                    correct=[judged[i] == metrics.POSITIVE for i in shown])
        label = ""
        if benchmark.query_labels is not None:
            label = f" ({benchmark.class_names.get(str(benchmark.query_labels[query]), benchmark.query_labels[query])})"
        caption = f"{benchmark.queries[query].path.name}{label}: AP {100 * scores.average_precision[query]:.1f}"
        parts.append(f"<p>{html.escape(caption)}</p><img src='{name}' alt='{html.escape(caption)}'>")
    intro = "<p>Queries from the worst to the best AP; results framed green are correct, red wrong (junk not shown).</p>"
    return "<h2>Sample queries</h2>" + intro + "".join(parts)


def _map_labels(result: EvaluationResult) -> np.ndarray | None:
    benchmark = result.benchmark
    if benchmark.database_labels is not None:
        return np.asarray(benchmark.database_labels).astype(str)
    truth = next(iter(benchmark.truths.values()))
    if isinstance(truth, ListTruth):
        labels = np.full(truth.n_database, "other", dtype=object)
        for query, positives in enumerate(truth.positives):
            name = benchmark.queries[query].path.stem.rstrip("0123456789_") or benchmark.queries[query].path.stem
            labels[positives[labels[positives] == "other"]] = name
        return labels.astype(str)
    return None


def _embedding_map(result: EvaluationResult):
    """Database embeddings in 2-D (t-SNE, or PCA for large sets) coloured by class."""
    vectors, labels = result.database_vectors, _map_labels(result)
    if vectors is None or labels is None or len(vectors) < 5:
        return None
    from sklearn.decomposition import PCA

    if len(vectors) <= TSNE_LIMIT:
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, *vectors.shape), random_state=0).fit_transform(vectors)
        points = TSNE(perplexity=min(30.0, (len(vectors) - 1) / 3), init="pca", random_state=0).fit_transform(reduced)
        method = "t-SNE of the first 50 principal components"
    else:
        points = PCA(n_components=2, random_state=0).fit_transform(vectors)
        method = "PCA"
    classes = sorted(set(labels))
    names = result.benchmark.class_names
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    colours = colormaps["tab20" if len(classes) > 10 else "tab10"]
    for number, name in enumerate(classes):
        chosen = labels == name
        colour = "#bbbbbb" if name == "other" else colours(number % colours.N)
        axes.scatter(points[chosen, 0], points[chosen, 1], s=8, color=colour, label=str(names.get(name, name)))
    if len(classes) <= 20:
        axes.legend(markerscale=2, fontsize=8, loc="best")
    axes.set_xticks([])
    axes.set_yticks([])
    return figure, f"Database embeddings ({method}), coloured by class"

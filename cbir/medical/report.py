"""The similar-cases picture: a case beside its k most and k least similar cases.

Each case is shown with its similarity and label; the labels of the most
similar cases are put to a vote. The picture comes with an HTML page and a
JSON document that hold only what the caller passed in: non-identifying case
names, labels and scores.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cbir.io.atomic import atomic_write

MATCH, MISMATCH, NEUTRAL = "#2e9b4a", "#d23c3c", "#9a9a9a"


@dataclass(frozen=True)
class Case:
    """One case in a report: its picture, a name that identifies no one, its label and its similarity."""

    image: Image.Image
    name: str
    label: str | None = None
    score: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "score": None if self.score is None else round(float(self.score), 4)}


@dataclass(frozen=True)
class SimilarCases:
    """A query case, its most similar cases (best first) and its least similar cases (least similar last)."""

    query: Case
    most: list[Case]
    least: list[Case]

    def vote(self) -> dict[str, int]:
        """Label counts among the most similar cases, most frequent first."""
        return dict(Counter(case.label for case in self.most if case.label is not None).most_common())

    def winners(self) -> list[str]:
        """The label(s) with the most votes."""
        votes = self.vote()
        return [label for label, count in votes.items() if count == max(votes.values())] if votes else []

    def to_dict(self) -> dict:
        return {
            "query": self.query.to_dict(),
            "most_similar": [case.to_dict() for case in self.most],
            "least_similar": [case.to_dict() for case in self.least],
            "vote": self.vote(),
            "vote_winners": self.winners(),
        }


def most_and_least(similarities: np.ndarray, k: int, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` most similar (best first) and ``k`` least similar (least similar last) candidates.

    ``candidates`` (a boolean mask) keeps, for instance, the cases of the same
    modality and drops those of the query's own patient. The two lists never
    share a case: with fewer than 2k candidates the least similar list is shorter.
    """
    similarities = np.asarray(similarities, dtype=np.float64)
    allowed = np.flatnonzero(np.ones(len(similarities), bool) if candidates is None else np.asarray(candidates, bool))
    order = allowed[np.argsort(-similarities[allowed], kind="stable")]
    most = order[:k]
    least = order[max(len(most), len(order) - k):]
    return most, least


def similar_cases_figure(cases: SimilarCases) -> Figure:
    """Top row: the query and its most similar cases; bottom row: the vote and the least similar cases."""
    columns = max(len(cases.most), len(cases.least), 1) + 1
    figure = Figure(figsize=(1.9 * columns, 4.6))
    grid = figure.subplots(2, columns, squeeze=False)
    for axes in grid.flat:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_frame_on(False)
    _show(grid[0, 0], cases.query, f"query\n{_label_text(cases.query)}", "#3a62c9")
    for row, shown in ((0, cases.most), (1, cases.least)):
        for column, case in enumerate(shown, start=1):
            rank = column if row == 0 else None
            title = f"{'#' + str(rank) + '  ' if rank else ''}{case.score:.3f}\n{_label_text(case)}" if case.score is not None else _label_text(case)
            _show(grid[row, column], case, title, _colour(cases.query, case))
    vote = cases.vote()
    lines = ["vote of the most", f"similar {len(cases.most)}:"] + [f"{label}: {count}" for label, count in vote.items()]
    grid[1, 0].text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=9, transform=grid[1, 0].transAxes)
    figure.text(0.01, 0.97, "most similar", fontsize=10, weight="bold", va="top")
    figure.text(0.01, 0.49, "least similar", fontsize=10, weight="bold", va="top")
    figure.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.02, hspace=0.55, wspace=0.12)
    return figure


def _label_text(case: Case) -> str:
    return case.label if case.label is not None else ""


def _colour(query: Case, case: Case) -> str:
    if query.label is None or case.label is None:
        return NEUTRAL
    return MATCH if case.label == query.label else MISMATCH


def _show(axes, case: Case, title: str, colour: str) -> None:
    picture = np.asarray(case.image.convert("RGB"))
    axes.imshow(picture, interpolation="nearest")
    axes.set_frame_on(True)
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    axes.set_title(title, fontsize=8)


def write_similar_cases(cases: SimilarCases, folder: str | Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.png`` (the picture) and ``stem.json`` into ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    picture, document = folder / f"{stem}.png", folder / f"{stem}.json"
    similar_cases_figure(cases).savefig(picture, dpi=110)
    with atomic_write(document) as stream:
        stream.write(json.dumps(cases.to_dict(), indent=2, ensure_ascii=False).encode("utf-8"))
    return picture, document


def write_report_page(
    entries: Sequence[tuple[SimilarCases, Path]], folder: str | Path, title: str, notes: Sequence[str] = ()
) -> Path:
    """``index.html`` in ``folder``: each query's picture with its vote, and ``report.json`` with them all."""
    folder = Path(folder)
    parts = [f"<p>{html.escape(note)}</p>" for note in notes]
    for cases, picture in entries:
        vote = ", ".join(f"{html.escape(str(label))}: {count}" for label, count in cases.vote().items())
        caption = f"{cases.query.name} (label {cases.query.label}); vote of the {len(cases.most)} most similar: {vote}"
        parts.append(f"<h2>{html.escape(cases.query.name)}</h2><p>{html.escape(caption)}</p>"
                     f"<img src='{html.escape(picture.name)}' alt='{html.escape(caption)}'>")
    page = folder / "index.html"
    body = "".join(parts)
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}}img{{max-width:100%}}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        encoding="utf-8",
    )
    document = {"title": title, "notes": list(notes), "queries": [cases.to_dict() for cases, _ in entries]}
    (folder / "report.json").write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return page

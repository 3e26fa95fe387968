"""README.md and docs/ quote measured figures: each must be in a committed results file under bench/results/.

The README's Python example must also run as written, twice (the second run adds nothing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_images

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
DOCUMENTS = [README, *sorted((REPOSITORY / "docs").glob("*.md"))]
RESULTS = sorted((REPOSITORY / "bench" / "results").glob("*.md"))
# Figures quoted from elsewhere, each with what it is; every other decimal figure is a measurement.
NOT_MEASURED_HERE = {
    "3.11": "the Python version the project needs",
    "99.38": "dlib's published LFW accuracy, cited as such in docs/faces.md",
    "87.8": "the best BreastMNIST ACC@1 of Mahbod et al. 2024, cited as such in docs/training.md",
}
POOLING_ROWS = {"SPoC": "SPoC", "MAC": "MAC", "GeM p=3": "GeM p=3", "R-MAC, 3 levels": "R-MAC", "CroW": "CroW"}


def prose(text: str) -> str:
    """Markdown without code blocks and code spans (commands and option values are not figures)."""
    return re.sub(r"`[^`\n]*`", " ", re.sub(r"```.*?```", " ", text, flags=re.DOTALL))


def decimals(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w.\-/=])\d+\.\d+(?![\w.])", text))


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """The rows of the first Markdown table after ``heading``: first cell -> the other cells."""
    section = text[text.index(heading):]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        if set(cells[0]) <= {"-", " "} or cells[0] in ("pooling",):
            continue
        rows[cells[0]] = cells[1:]
    return rows


def test_the_pooling_table_is_the_quality_benchmarks_plain_column():
    readme = README.read_text()
    quality = (REPOSITORY / "bench" / "results" / "quality.md").read_text()
    shown = table_rows(readme, "## Defaults, and why")
    corel, ukbench = table_rows(quality, "### corel1k\n"), table_rows(quality, "### ukbench_subset")
    assert set(shown) == set(POOLING_ROWS)
    for readme_name, results_name in POOLING_ROWS.items():
        corel_map, corel_p10 = corel[results_name][0].split(" / ")
        assert shown[readme_name] == [corel_map, corel_p10, ukbench[results_name][0]], readme_name


def test_every_figure_in_the_readme_and_docs_is_in_a_results_file():
    measured = set().union(*(decimals(path.read_text()) for path in RESULTS))
    unsourced = {
        path.relative_to(REPOSITORY).as_posix(): sorted(decimals(prose(path.read_text())) - measured - set(NOT_MEASURED_HERE))
        for path in DOCUMENTS
    }
    assert {name: figures for name, figures in unsourced.items() if figures} == {}


def readme_python_example() -> str:
    text = README.read_text()
    return re.search(r"From Python.*?```python\n(.*?)```", text, flags=re.DOTALL).group(1)


@pytest.mark.timeout(900)
def test_the_readme_python_example_runs_twice(tmp_path):
    """Run as written from a folder with query.jpg, HOME holding ~/Pictures: the second run adds nothing."""
    pictures = write_images(tmp_path / "Pictures", 6)
    (tmp_path / "query.jpg").write_bytes(pictures[2].read_bytes())
    environment = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPOSITORY)}
    runs = [
        subprocess.run([sys.executable, "-c", readme_python_example()], cwd=tmp_path, env=environment,
                       capture_output=True, text=True, timeout=600)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert "added 6, unchanged 0, skipped 0" in runs[0].stdout
    assert "added 0, unchanged 6, skipped 0" in runs[1].stdout
    assert runs[1].stdout.splitlines()[1].startswith("1 1.000 ") and runs[1].stdout.splitlines()[1].endswith("img_0002.jpg")

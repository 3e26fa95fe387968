"""`cbir evaluate` from the command line on small generated data, and on shared data when present."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cbir.cli import app
from cbir.demo import edited_copy
from tests.conftest import pattern_image, shared_data


def labeled_folder(root):
    """3 classes of 4 edited copies of one picture each, plus one corrupt file."""
    for label in range(3):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        original = pattern_image(label * 7 + 1, (200, 150))
        for copy in range(4):
            edited_copy(original, seed=10 * label + copy).save(folder / f"{copy}.jpg", quality=90)
    (root / "class_0" / "broken.jpg").write_bytes(b"not an image")
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cbir.cli", *args], capture_output=True, text=True, timeout=300)


def test_evaluate_labeled_writes_json_and_report(tmp_path):
    data = labeled_folder(tmp_path / "data")
    out, report = tmp_path / "result.json", tmp_path / "report"
    completed = run_cli(
        "evaluate", "labeled", str(data), "--pooling", "gem", "--size", "96", "--qe", "2", "--dba", "1",
        "--json", str(out), "--report", str(report), "--cache", str(tmp_path / "cache"), "-k", "1", "-k", "3",
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(out.read_text())
    assert result["protocol"] == "labeled"
    assert result["config"]["queries"] == 12 and result["config"]["split"] == "leave-one-out"
    assert set(result["metrics"]) == {"mAP", "mAP@1", "mAP@3", "P@1", "P@3", "R@1", "R@3", "MAP@R"}
    assert result["metrics"]["mAP"] > 80  # near-duplicates of one picture per class
    assert result["config"]["alpha_qe"] == {"neighbours": 2, "alpha": 3.0}
    assert [entry["file"].endswith("broken.jpg") for entry in result["skipped"]] == [True]
    assert "mAP" in completed.stdout and "broken.jpg: not a recognised image format" in completed.stderr
    page = (report / "index.html").read_text()
    for picture in ("precision_recall.png", "ap_per_group.png", "query_0.png", "embedding_map.png"):
        assert picture in page and (report / picture).stat().st_size > 1000


def test_whitening_on_the_evaluated_set_is_flagged(tmp_path):
    data = labeled_folder(tmp_path / "data")
    out = tmp_path / "result.json"
    result = CliRunner().invoke(app, [
        "evaluate", "labeled", str(data), "--pooling", "gem", "--size", "96", "--whiten", "--whiten-dim", "8",
        "--json", str(out), "--cache", str(tmp_path / "cache"),
    ])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["config"]["whitening"] == {"learned_on": "the evaluated database itself", "images": 12, "dim": 8}
    assert any("learned on the evaluated images" in note for note in written["notes"])
    assert "flatters the result" in " ".join(result.output.split())


def test_json_file_keeps_non_ascii_names_readable(tmp_path):
    data = labeled_folder(tmp_path / "data")
    (data / "class_1" / "kaputt-Übung.jpg").write_bytes(b"not an image either")
    out = tmp_path / "result.json"
    result = CliRunner().invoke(app, [
        "evaluate", "labeled", str(data), "--pooling", "gem", "--size", "96", "--json", str(out), "--cache", str(tmp_path / "cache"),
    ])
    assert result.exit_code == 0, result.output
    text = out.read_bytes().decode("utf-8")
    assert "kaputt-Übung.jpg" in text and "\\u" not in text
    assert {entry["file"].rsplit("/", 1)[-1] for entry in json.loads(text)["skipped"]} == {"broken.jpg", "kaputt-Übung.jpg"}


def test_missing_data_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "labeled", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "error" in result.output and "class subfolders" in " ".join(result.output.split())


def test_encoder_file_excludes_other_encoder_options(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    result = CliRunner().invoke(app, ["evaluate", "ukbench", str(tmp_path), "--encoder", str(model), "--pooling", "gem"])
    assert result.exit_code == 2 and "drop the other encoder options" in " ".join(result.output.split())


def test_evaluate_pairs_with_an_image_encoder(tmp_path):
    images = tmp_path / "people"
    for person in range(4):
        folder = images / f"P{person}"
        folder.mkdir(parents=True)
        original = pattern_image(person * 5 + 2, (160, 120))
        for number in (1, 2):
            edited_copy(original, seed=person * 10 + number).save(folder / f"P{person}_{number:04d}.jpg")
    # LFW format: 2 folds, each with 2 same-person and 2 different-person pairs
    lines = ["2\t2", "P0\t1\t2", "P1\t1\t2", "P0\t1\tP1\t2", "P2\t1\tP3\t1",
             "P2\t1\t2", "P3\t1\t2", "P0\t2\tP3\t2", "P1\t1\tP2\t2"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "pairs.json"
    result = CliRunner().invoke(app, [
        "evaluate", "pairs", str(tmp_path / "pairs.txt"), "--images", str(images), "--pooling", "gem", "--size", "96",
        "--json", str(out), "--cache", str(tmp_path / "cache"),
    ])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["protocol"] == "pairs" and written["config"]["pairs"] == 8 and written["config"]["folds"] == 2
    assert written["metrics"]["AUC"] == 100.0  # edited copies of one picture beat different pictures
    assert written["metrics"]["accuracy"] == 100.0


@pytest.mark.slow
def test_ukbench_subset_score(tmp_path):
    from cbir.evaluation import protocols
    from cbir.evaluation.benchmark import evaluate
    from cbir.evaluation.descriptors import EncoderChoice

    result = evaluate(protocols.ukbench(shared_data("ukbench_subset") / "full"), EncoderChoice.of(), cache_dir=tmp_path)
    assert result.config["queries"] == 56
    assert result.metrics["N-S"] >= 3.8

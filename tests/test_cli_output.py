"""The command line starts without the heavy libraries, keeps results on stdout and writes readable UTF-8 JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cbir.cli import app
from tests.conftest import pattern_image

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "faiss")
runner = CliRunner()

# Runs the command line in a fresh interpreter, then writes which heavy modules it imported to the file REPORT.
RUN_AND_REPORT = """
import json, os, sys
from cbir.cli import app
try:
    app(sys.argv[1:], prog_name="cbir")
except SystemExit as exit:
    code = exit.code or 0
else:
    code = 0
with open(os.environ["REPORT"], "w") as report:
    json.dump({"code": code, "heavy": [name for name in HEAVY if name in sys.modules]}, report)
"""


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``cbir ARGS`` in a subprocess: (the run, with stdout and stderr apart; {code, heavy modules imported})."""
    report = tmp_path / "report.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "REPORT": str(report)}
    script = f"HEAVY = {HEAVY!r}\n" + RUN_AND_REPORT
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=environment, timeout=300)
    return run, json.loads(report.read_text())


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """A small indexed collection whose file names are not ASCII."""
    root = tmp_path_factory.mktemp("unicode")
    photos = root / "Fotos"
    photos.mkdir()
    for seed, name in enumerate(["Café_東京.jpg", "Ærø-München.jpg", "plain.jpg"]):
        pattern_image(seed).save(photos / name, quality=90)
    path = root / "collection"
    result = runner.invoke(app, ["index", str(photos), "-c", str(path), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    return path


def test_help_imports_no_torch_timm_or_faiss(tmp_path):
    run, report = run_cli(tmp_path, "--help")
    assert report == {"code": 0, "heavy": []}, run.stderr
    assert "index" in run.stdout and "evaluate" in run.stdout


def test_info_imports_no_torch_timm_or_faiss_and_prints_to_stdout(collection, tmp_path):
    run, report = run_cli(tmp_path, "info", "-c", str(collection))
    assert report == {"code": 0, "heavy": []}, run.stderr
    assert "items" in run.stdout and "3" in run.stdout and "efficientnet_lite0" in run.stdout
    assert run.stderr == ""


def test_faces_list_imports_no_torch_timm_or_faiss(collection, tmp_path):
    run, report = run_cli(tmp_path, "faces", "list", "-c", str(collection), "--json")
    assert report == {"code": 0, "heavy": []}, run.stderr
    assert json.loads(run.stdout)["people"] == {}


def test_info_redirected_to_a_file_holds_the_results(collection, tmp_path):
    target = tmp_path / "info.txt"
    with target.open("w") as stdout:
        run = subprocess.run([sys.executable, "-m", "cbir.cli", "info", "-c", str(collection)], stdout=stdout,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr
    text = target.read_text()
    assert "size on disk" in text and "space image" in text


def test_index_report_goes_to_stdout_and_progress_to_stderr(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        pattern_image(seed).save(photos / f"{seed}.jpg")
    (photos / "broken.jpg").write_bytes(b"not a picture")
    result = runner.invoke(app, ["index", str(photos), "-c", str(tmp_path / "c"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "added 3" in result.stdout and "broken.jpg" in result.stdout
    assert "added 3" not in result.stderr and "indexing" in result.stderr


def test_errors_go_to_stderr(tmp_path):
    result = runner.invoke(app, ["info", "-c", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no collection at" in result.stderr and result.stdout == ""


def test_json_output_keeps_non_ascii_file_names_readable(collection):
    query = collection.parent / "Fotos" / "Café_東京.jpg"
    result = runner.invoke(app, ["search", str(query), "-c", str(collection), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes.decode("utf-8")
    assert "Café_東京.jpg" in raw and "Ærø-München.jpg" in raw and "\\u" not in raw
    hits = json.loads(raw)["results"]
    assert hits[0]["uri"].endswith("Café_東京.jpg")


def test_json_of_a_name_that_is_no_valid_text_stays_valid_json():
    from cbir.commands.common import json_text

    undecodable = os.fsdecode(b"photo-\xff.jpg")  # a name whose bytes are not UTF-8, as Linux hands it over
    encoded = (json_text({"uri": undecodable, "city": "Zürich"}) + "\n").encode("utf-8", "backslashreplace")
    decoded = json.loads(encoded.decode("utf-8"))
    assert decoded == {"uri": undecodable, "city": "Zürich"}


def test_unknown_registry_names_are_refused_with_the_known_ones(tmp_path):
    result = runner.invoke(app, ["index", str(tmp_path), "-c", str(tmp_path / "c"), "--pooling", "median"])
    assert result.exit_code == 2
    assert "'median' is not one of spoc, mac, gem, rmac, crow" in " ".join(result.output.replace("│", " ").split())


def test_command_help_lists_the_registered_names():
    result = runner.invoke(app, ["faces", "identify", "--help"])
    assert result.exit_code == 0
    assert "hog, cnn, yunet" in " ".join(result.stdout.replace("│", " ").split())

"""The command line at its edges: bad numbers, missing paths, deleted files, busy ports, `~` in paths."""

from __future__ import annotations

import shutil
import socket

import pytest
from typer.testing import CliRunner

from cbir.cli import app

runner = CliRunner()


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.mark.parametrize("k", ["0", "-3"])
def test_k_below_one_is_rejected(tmp_path, k):
    result = runner.invoke(app, ["search", str(tmp_path / "q.jpg"), "-c", str(tmp_path / "c"), "-k", k])
    assert result.exit_code == 2
    assert "-k" in said(result) and "greater than or equal to 1" in said(result)


def test_evaluation_cut_offs_below_one_are_rejected(tmp_path):
    result = runner.invoke(app, ["evaluate", "labeled", str(tmp_path), "-k", "0"])
    assert result.exit_code == 2 and "greater than or equal to 1" in said(result)


def test_indexing_a_missing_folder_names_it_and_creates_nothing(tmp_path):
    missing, collection = tmp_path / "no" / "such" / "dir", tmp_path / "X"
    result = runner.invoke(app, ["index", str(missing), "-c", str(collection)])
    assert result.exit_code == 2
    assert f"file not found: {missing}" in said(result)
    assert not collection.exists()


def test_a_failed_first_run_leaves_no_collection(tmp_path, image_folder):
    """An index that cannot train on so few images fails after the collection was created: it is removed."""
    collection = tmp_path / "X"
    result = runner.invoke(app, ["index", str(image_folder), "-c", str(collection), "--index", "IVF64,PQ8", "--workers", "0"])
    assert result.exit_code == 2 and "needs at least" in said(result)
    assert not collection.exists()
    collection.mkdir()
    (collection / "notes.txt").write_text("mine")
    again = runner.invoke(app, ["index", str(image_folder), "-c", str(collection), "--index", "IVF64,PQ8", "--workers", "0"])
    assert again.exit_code == 2 and [entry.name for entry in collection.iterdir()] == ["notes.txt"]


def test_a_missing_weights_file_is_a_sentence(tmp_path, image_folder):
    weights = tmp_path / "absent.pt"
    result = runner.invoke(app, ["index", str(image_folder), "-c", str(tmp_path / "X"), "--backbone", "resnet18", "--weights", str(weights)])
    assert result.exit_code == 2
    assert f"weights file {weights} does not exist" in said(result) and "Errno" not in said(result)
    assert not (tmp_path / "X").exists()


def test_a_missing_query_names_the_path(tmp_path, image_folder):
    collection = tmp_path / "c"
    assert runner.invoke(app, ["index", str(image_folder), "-c", str(collection), "--workers", "0"]).exit_code == 0
    query = tmp_path / "absent.jpg"
    result = runner.invoke(app, ["search", str(query), "-c", str(collection)])
    assert result.exit_code == 2 and f"file not found: {query}" in said(result)


def test_deleted_files_are_counted_until_sync_drops_them(tmp_path, image_folder):
    collection = tmp_path / "c"
    assert runner.invoke(app, ["index", str(image_folder), "-c", str(collection), "--workers", "0"]).exit_code == 0
    (image_folder / "img_0001.jpg").unlink()
    shutil.rmtree(image_folder / "nested")
    again = runner.invoke(app, ["index", str(image_folder), "-c", str(collection), "--workers", "0"])
    assert again.exit_code == 0 and "5 files are gone: run with --sync to drop them" in said(again)
    synced = runner.invoke(app, ["index", str(image_folder), "-c", str(collection), "--sync", "--workers", "0"])
    assert "removed 5" in said(synced) and "gone" not in said(synced)


def test_paths_with_a_tilde_are_the_home_folder(tmp_path, image_folder, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(image_folder, tmp_path / "Pictures")
    indexed = runner.invoke(app, ["index", "~/Pictures", "-c", "~/pics", "--workers", "0"])
    assert indexed.exit_code == 0, indexed.output
    assert (tmp_path / "pics" / "manifest.json").is_file() and not (tmp_path / "~").exists()
    searched = runner.invoke(app, ["search", "~/Pictures/img_0002.jpg", "-c", "~/pics", "-k", "2", "--grid", "~/grid.png"])
    assert searched.exit_code == 0, searched.output
    assert (tmp_path / "grid.png").is_file() and "img_0002.jpg" in said(searched)


def test_a_port_in_use_is_said_before_loading(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", "-c", str(tmp_path / "c"), "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in said(result)
    assert "serving" not in said(result) and "loading" not in said(result)

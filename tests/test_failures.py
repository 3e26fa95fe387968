"""Failures of the machine or of a collection's files end in one line that names the file and what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cbir.cli import app
from cbir.collection.collection import Collection
from tests.conftest import write_images

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template")
    write_images(root / "images", 3, size=(96, 72))
    with Collection.create(root / "c") as collection:
        collection.add([root / "images"], workers=0)
    return root / "c"


@pytest.fixture
def collection_path(template, tmp_path) -> Path:
    shutil.copytree(template, tmp_path / "c")
    return tmp_path / "c"


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def test_a_damaged_catalog_is_one_line_naming_it(collection_path):
    (collection_path / "catalog.sqlite").write_bytes(b"this is not a database" * 200)
    for sidecar in collection_path.glob("catalog.sqlite-*"):
        sidecar.unlink()
    message = _one_line_error(CliRunner().invoke(app, ["info", "--collection", str(collection_path)]))
    assert "catalog.sqlite is damaged" in message and "backup" in message


def test_doctor_reports_then_repairs_from_the_catalog(collection_path):
    runner = CliRunner()
    healthy = runner.invoke(app, ["doctor", "--collection", str(collection_path), "--json"])
    assert healthy.exit_code == 0, healthy.output
    (collection_path / "index-image.faiss").write_bytes(b"garbage")
    (collection_path / ".manifest.json.x1y2.tmp").write_bytes(b"{")
    os.utime(collection_path / ".manifest.json.x1y2.tmp", (1, 1))
    sick = runner.invoke(app, ["doctor", "--collection", str(collection_path)])
    assert sick.exit_code == 1 and "problem" in sick.output
    repaired = runner.invoke(app, ["doctor", "--collection", str(collection_path), "--repair"])
    assert repaired.exit_code == 0 and "repaired" in repaired.output
    assert runner.invoke(app, ["doctor", "--collection", str(collection_path)]).exit_code == 0
    assert not list(collection_path.glob(".*.tmp"))


def _in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available to mount a small file system")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow private mounts: {probe.stderr.decode().strip()}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    return subprocess.run(["unshare", "-rm", "sh", "-ec", script], capture_output=True, env=env, timeout=600)


@pytest.mark.timeout(600)
def test_a_full_disk_while_indexing_is_one_line(tmp_path):
    write_images(tmp_path / "images", 24, size=(96, 72))
    small = tmp_path / "small"
    small.mkdir()
    result = _in_mount_namespace(
        f"mount -t tmpfs -o size=96k tmpfs {small}\n"
        f"{sys.executable} -m cbir.cli index {tmp_path / 'images'} --collection {small / 'c'} --workers 0 --batch-size 4"
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "no space left" in output or "disk is full" in output, output


@pytest.mark.timeout(600)
def test_a_collection_on_a_read_only_mount_is_searched(collection_path):
    script = (
        "from cbir.collection.collection import Collection, CollectionError\n"
        f"store = Collection.open({str(collection_path)!r})\n"
        "ids, vectors = store.vectors()\n"
        "assert store.read_only and [store.search(v, k=1)[0].item_id for v in vectors] == list(ids)\n"
        "try:\n    store.add(['/'])\nexcept CollectionError as error:\n    print('refused:', error)\n"
    )
    (collection_path / "index-image.json").unlink()
    for sidecar in collection_path.glob("catalog.sqlite-*"):
        sidecar.unlink()
    result = _in_mount_namespace(
        f"mount --bind {collection_path} {collection_path}\nmount -o remount,ro,bind {collection_path}\n{sys.executable} -c \"$SCRIPT\"".replace("$SCRIPT", script.replace('"', '\\"'))
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert "refused:" in output and "read-only" in output
    assert not (collection_path / "index-image.json").exists()

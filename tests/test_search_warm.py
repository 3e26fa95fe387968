"""`cbir search` answers through the collection's running `cbir serve` (same output), and searches in-process
with --local, without a server, or when the recorded server is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cbir.commands.remote import holds_videos
from cbir.server.address import ADDRESS_FILE, ServerAddress, forget, record, running_server
from tests.server_support import build_collection, query_jpeg, serving

REPOSITORY = Path(__file__).resolve().parents[1]
SERVED = "answered by the cbir serve at"


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CBIR_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return env


def cbir(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbir.cli", *arguments], env=environment(), capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(collection, query file, server process) with `cbir serve` answering on a free loopback port."""
    root = tmp_path_factory.mktemp("warm")
    collection = build_collection(root)
    query = root / "query.jpg"
    query.write_bytes(query_jpeg("cat"))
    with serving(collection, environment()) as (_, process):
        yield collection, query, process


def test_search_goes_through_the_server_with_the_same_results(served):
    collection, query, _ = served
    assert running_server(collection) is not None
    through, here = cbir("search", str(query), "-c", str(collection), "--json", "-k", "5"), cbir(
        "search", str(query), "-c", str(collection), "--json", "-k", "5", "--local"
    )
    assert SERVED in through.stderr and SERVED not in here.stderr
    assert holds_videos(running_server(collection).url) is False  # no moments to make: the server answers
    assert json.loads(through.stdout) == json.loads(here.stdout)
    assert json.loads(through.stdout)["results"][0]["uri"].endswith("cat.jpg")
    filtered = cbir("search", str(query), "-c", str(collection), "--json", "--kind", "region", "--label", "face")
    local = cbir("search", str(query), "-c", str(collection), "--json", "--kind", "region", "--label", "face", "--local")
    assert SERVED in filtered.stderr
    assert json.loads(filtered.stdout) == json.loads(local.stdout) and len(json.loads(local.stdout)["results"]) == 2
    table, local_table = cbir("search", str(query), "-c", str(collection)), cbir("search", str(query), "-c", str(collection), "--local")
    assert table.stdout == local_table.stdout and "cat.jpg" in table.stdout


def test_a_stopped_server_leaves_no_address_and_search_runs_here(served):
    collection, query, process = served
    process.terminate()
    process.wait(timeout=30)
    assert not (collection / ADDRESS_FILE).exists()
    answer = cbir("search", str(query), "-c", str(collection), "--json")
    assert SERVED not in answer.stderr and json.loads(answer.stdout)["results"]


def test_an_address_left_by_a_dead_process_or_another_server_is_not_used(tmp_path):
    mine = record(tmp_path, "0.0.0.0", 8123, token=True)
    assert mine is not None and running_server(tmp_path) == mine and mine.url == "http://127.0.0.1:8123"
    assert "token" not in (tmp_path / ADDRESS_FILE).read_text().replace('"token": true', "")
    other = ServerAddress(mine.machine, mine.pid, "::", 9000, False)
    (tmp_path / ADDRESS_FILE).write_text(json.dumps(other.__dict__))
    forget(tmp_path, mine)  # another server's address stays
    assert running_server(tmp_path) == other and other.url == "http://[::1]:9000"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ADDRESS_FILE).write_text(json.dumps({**other.__dict__, "pid": dead.pid}))
    assert running_server(tmp_path) is None
    (tmp_path / ADDRESS_FILE).write_text("{not json")
    assert running_server(tmp_path) is None


def test_the_path_to_a_server_imports_neither_numpy_nor_torch_nor_faiss():
    code = "import sys, cbir.cli, cbir.commands.remote; print(sorted({'numpy', 'torch', 'faiss'} & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", code], env=environment(), capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"

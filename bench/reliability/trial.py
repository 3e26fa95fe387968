"""Reliability trial: kills during indexing, bad inputs, attacks on the server, and the decode-memory and
lock-wait figures of the current code against a baseline checkout, in one run.

    python -m bench.reliability.trial --baseline /path/to/earlier/checkout [--kills 6]

Writes ``bench/results/reliability.md`` (and ``.json``). The baseline is any
earlier checkout of the project (for example ``git archive COMMIT | tar -x -C DIR``);
the memory and wait probes run once with it first on ``PYTHONPATH``, once with this one.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from PIL import Image

from bench.common import REPOSITORY, RESULTS, RunClock, command_line, machine_description
from tests.conftest import write_images


def _count(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:
        return 0


def _consistent(collection: Path, images: int | None = None) -> str | None:
    """None when every image is there at most once (exactly once when ``images``) and the index agrees."""
    from cbir.collection.collection import Collection
    from cbir.collection.doctor import diagnose

    with Collection.open(collection) as store:
        uris = [row[0] for row in store.catalog.connection.execute("SELECT uri FROM items")]
        if len(uris) != len(set(uris)):
            return f"duplicates: {len(uris) - len(set(uris))}"
        if images is not None and len(uris) != images:
            return f"{len(uris)} of {images} items"
        if not np.array_equal(np.sort(store.index().ids()), store.catalog.item_ids("image")):
            return "index and catalog disagree"
    problems = diagnose(collection).problems_left
    return "; ".join(f"{p.check}: {p.detail}" for p in problems) or None


def kills(work: Path, trials: int, seed: int = 0) -> dict:
    """Kill -9 ``cbir``'s indexing at random points, check the collection after each, then finish the job."""
    rng = random.Random(seed)
    folder, collection = work / "kill-images", work / "kill-collection"
    images = 40
    write_images(folder, images, size=(96, 72))
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    outcomes = []
    for _ in range(trials):
        process = subprocess.Popen([sys.executable, "-m", "bench.reliability.victim", str(folder), str(collection)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = _count(collection / "catalog.sqlite") + rng.randint(1, 6)
        while process.poll() is None and _count(collection / "catalog.sqlite") < target:
            time.sleep(0.02)
        time.sleep(rng.random() * 0.3)
        process.send_signal(signal.SIGKILL)
        process.wait()
        outcomes.append({"items_at_kill": _count(collection / "catalog.sqlite"), "problem": _consistent(collection)})
    finished = subprocess.run([sys.executable, "-m", "bench.reliability.victim", str(folder), str(collection)], env=env,
                              capture_output=True)
    final = _consistent(collection, images) if finished.returncode == 0 else finished.stderr.decode()[-300:]
    return {"trials": trials, "recovered": sum(o["problem"] is None for o in outcomes) + 0, "outcomes": outcomes,
            "final": final or "all 40 images exactly once, index in line, doctor finds nothing"}


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Files that must be skipped with a reason (name -> what it is)."""
    folder.mkdir(parents=True)
    good = io.BytesIO()
    Image.new("RGB", (80, 60), (10, 120, 200)).save(good, "JPEG")
    png = io.BytesIO()
    Image.new("RGB", (80, 60), (10, 120, 200)).save(png, "PNG")
    jpeg, png_bytes = good.getvalue(), png.getvalue()
    bomb = bytearray(png_bytes)
    bomb[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")
    made = {
        "empty.jpg": b"", "truncated.jpg": jpeg[: len(jpeg) // 3], "truncated.png": png_bytes[: len(png_bytes) // 2],
        "random.jpg": bytes(random.Random(1).randrange(256) for _ in range(3000)), "text.png": b"hello, I am text",
        "html.gif": b"<html><script>alert(1)</script></html>", "bomb-header.png": bytes(bomb),
        "jpeg-named.png": jpeg, "zero.bmp": b"BM" + b"\0" * 60, "header-only.jpg": jpeg[:20],
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "fifo.jpg")
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    (folder / "directory.jpg").mkdir()
    with open(os.fsencode(folder) + b"/latin1-\xe9t\xe9.jpg", "wb") as stream:
        stream.write(jpeg)
    for index in range(3):
        (folder / f"good-{index}.jpg").write_bytes(jpeg)
    return made


def inputs(work: Path) -> dict:
    """Index a folder of bad inputs beside three good pictures in one run."""
    from cbir.collection.collection import Collection

    folder = work / "bad-inputs"
    _bad_inputs(folder)
    with Collection.create(work / "bad-collection") as store:
        report = store.add([folder], workers=0)
    return {
        "kinds": len(report.skipped) + 1, "indexed": report.added, "skipped_with_reason": len(report.skipped),
        "completed": True, "skipped": [f"{Path(uri).name}: {reason}" for uri, reason in report.skipped],
        "note": "the directory named directory.jpg is not a file and is passed over",
    }


TRAVERSALS = [
    "/items/1/../../../../etc/passwd", "/items/%2e%2e/%2e%2e/etc/passwd", "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd", "/items/..%2f..%2fetc%2fpasswd/file",
    "/items/-1/file", "/items/0/file", "/items/99999999999999999999/file", "/items/1%00/file", "/items/1;/file",
    "/items/ 1/file", "/static//etc/passwd", "/static/%252e%252e/%252e%252e/etc/passwd", "//etc/passwd", "/..;/etc/passwd",
    "/items/1/file/../../../../etc/passwd", "/static/index.html/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
    "/items/1/thumbnail?size=../../etc/passwd",
]


def attacks(work: Path) -> dict:
    """Path traversal, a symlink swapped over an indexed file, foreign Host names, oversized and bomb uploads."""
    from fastapi.testclient import TestClient

    from cbir.server.app import create_app
    from cbir.server.settings import ServerSettings
    from tests.server_support import build_collection, image_bytes

    path = build_collection(work / "attack")
    settings = ServerSettings(refresh_interval=None, max_upload_bytes=1 << 20, allowed_hosts=("127.0.0.1", "localhost"))
    client = TestClient(create_app(path, token="t", settings=settings), base_url="http://127.0.0.1")
    secret = work / "secret.txt"
    secret.write_text("root:x:0:0:secret\n")
    results = {}
    leaked = [url for url in TRAVERSALS if b"root:x:0:0" in client.get(url).content]
    results["path_traversal"] = {"attempts": len(TRAVERSALS), "served_a_file_outside": len(leaked)}
    hits = client.post("/search", data={"item_id": 1, "k": 20}).json()["results"]
    swapped = 0
    for hit in hits[:5]:
        os.unlink(hit["uri"]) if os.path.lexists(hit["uri"]) else None
        os.symlink(secret, hit["uri"])
    for hit in hits:
        for part in ("file", "thumbnail"):
            response = client.get(f"/items/{hit['item_id']}/{part}")
            swapped += b"root:x:0:0" in response.content
    results["symlink_swap"] = {"requests": 2 * len(hits), "served_the_link_target": swapped}
    hosts = ["attacker.example", "127.0.0.1.nip.io", "localhost.attacker.example", "evil:80", "[::2]"]
    refused = sum(client.get("/info", headers={"Host": host}).status_code == 421 for host in hosts)
    results["foreign_host_names"] = {"attempts": len(hosts), "refused": refused}
    big = os.urandom((1 << 20) + 1)
    bomb = bytearray(image_bytes((64, 64)))
    bomb[16:24] = (60_000).to_bytes(4, "big") + (60_000).to_bytes(4, "big")
    statuses = [
        client.post("/search", files={"image": ("big.jpg", big, "image/jpeg")}).status_code,
        client.post("/search", files={"image": ("bomb.png", bytes(bomb), "image/png")}).status_code,
        client.post("/search", files={"image": ("x.png", b"<svg onload=alert(1)>", "image/png")}).status_code,
    ]
    results["oversized_bomb_and_fake_uploads"] = {"statuses": statuses}
    return results


def probe(kind: str, code: Path, work: Path) -> dict:
    """Run a probe in its own process with ``code`` first on the path, on a fresh copy of the test collection."""
    from tests.server_support import build_collection

    collection = build_collection(work / f"{kind}-{code.name}")
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{REPOSITORY}", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(Path(__file__).with_name("probes.py")), kind, str(collection)], env=env,
                         capture_output=True, cwd=REPOSITORY, timeout=900)
    if run.returncode:
        return {"error": run.stderr.decode()[-600:]}
    return json.loads(run.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="An earlier checkout to compare with.")
    parser.add_argument("--kills", type=int, default=6)
    args = parser.parse_args()
    clock = RunClock()
    with TemporaryDirectory(prefix="cbir-reliability-") as directory:
        work = Path(directory)
        figures = {"kills": kills(work, args.kills), "inputs": inputs(work), "attacks": attacks(work)}
        for kind in ("memory", "waits"):
            figures[kind] = {"baseline": probe(kind, args.baseline.resolve(), work), "current": probe(kind, REPOSITORY, work)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = ["# Reliability trial", "", f"`{command_line()}`", "", *machine_description(), clock.summary(), "", "```json",
             json.dumps(figures, indent=2), "```", ""]
    (RESULTS / "reliability.md").write_text("\n".join(lines))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

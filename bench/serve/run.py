"""Load benchmark of ``cbir serve``: concurrent searches on 127.0.0.1, requests/s and latency percentiles.

    PYTHONPATH=$PWD python bench/serve/run.py [--images DIR] [--seconds 10] [--clients 1 8 32]

Indexes the images (default: ../shared/data/corel1k) into a collection under
--work (once), measures the server's search service without HTTP as the baseline,
starts ``cbir serve`` on a free loopback port, and fires searches from 1, 8
and 32 concurrent clients for a bounded time each: uploads of collection
images ("image": decode + encode + search) and searches by item id ("item":
no encoding). Every answer is checked: HTTP 200 and the query itself ranked
first, or it counts as a failure. Writes bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import shlex
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.common import default_data, machine_summary
from cbir.collection.collection import Collection
from cbir.io.images import is_image_path, load_image
from cbir.progress import console, progress_bar
from cbir.server.service import CollectionService
from cbir.server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES = default_data() / "corel1k"
LOOPBACK = "127.0.0.1"
QUERY_COUNT = 40
START_TIMEOUT_S = 300


@dataclass
class Query:
    """A collection image used as a query: its bytes, and the item it must find first."""

    name: str
    data: bytes
    item_id: int
    uri: str


@dataclass
class LoadResult:
    mode: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.failures.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def prepare(images: Path, work: Path) -> tuple[Path, list[Query]]:
    """Index ``images`` into ``work/collection`` (only what is new) and pick the queries."""
    path = work / "collection"
    with Collection.open_or_create(path) as collection:
        with progress_bar("indexing") as update:
            report = collection.add([images], progress=update)
        console.print(f"collection: {collection.info()['items']} items ({report.added} added now)")
        files = sorted(p for p in images.rglob("*") if p.is_file() and is_image_path(p))
        picked = files[:: max(1, len(files) // QUERY_COUNT)][:QUERY_COUNT]
        queries = []
        for file in picked:
            uri = str(file.resolve())
            ids = collection.catalog.item_ids_with_uri(uri)
            if ids:
                queries.append(Query(file.name, file.read_bytes(), ids[0], uri))
    if not queries:
        raise SystemExit(f"none of the images under {images} could be indexed")
    return path, queries


def in_process_baseline(path: Path, queries: list[Query], seconds: float) -> dict[str, float]:
    """Searches per second through the server's ``CollectionService`` without HTTP, one at a time.

    Runs in a fresh process, in a worker thread as the server's endpoints do:
    "image" and "item" as the server is set up (FAISS on one thread per
    search), "item, default threads" with FAISS's default OpenMP threads.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure_in_process, (path, queries, seconds))


def _measure_in_process(path: Path, queries: list[Query], seconds: float) -> dict[str, float]:
    import faiss

    service = CollectionService(path, ServerSettings(refresh_interval=None))
    size = service.encoder.spec.image_size
    variants = (("image", "image", 1), ("item", "item", 1), ("item, default threads", "item", faiss.omp_get_max_threads()))

    def search(query: Query, mode: str) -> list:
        if mode == "image":
            return service.search_vector(service.encode(load_image(query.data, min_side=size)), k=10)
        return service.search_item(query.item_id, k=10)

    def measure() -> dict[str, float]:
        search(queries[0], "image")
        rates = {}
        for label, mode, threads in variants:
            service.settings = dataclasses.replace(service.settings, search_threads=threads)
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                query = queries[done % len(queries)]
                assert search(query, mode)[0].item_id == query.item_id, f"{query.name} did not find itself"
                done += 1
            rates[label] = done / (time.perf_counter() - started)
        return rates

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(measure).result()


def start_server(path: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "cbir.cli", "serve", "--collection", str(path), "--host", LOOPBACK, "--port", str(port)]
    environment = {key: value for key, value in os.environ.items() if key != "CBIR_TOKEN"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"cbir serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"http://{LOOPBACK}:{port}/info", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"cbir serve did not answer within {START_TIMEOUT_S} s")


async def fire(base: str, mode: str, clients: int, seconds: float, queries: list[Query]) -> LoadResult:
    """``clients`` loops sending searches back to back until ``seconds`` have passed."""
    result = LoadResult(mode, clients, 0.0)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def one(query: Query) -> str | None:
            if mode == "image":
                response = await client.post("/search", files={"image": (query.name, query.data)}, data={"k": 10})
            else:
                response = await client.post("/search", data={"item_id": query.item_id, "k": 10})
            if response.status_code != 200:
                return f"HTTP {response.status_code}"
            if response.json()["results"][0]["item_id"] != query.item_id:
                return "wrong first result"
            return None

        async def worker(number: int) -> None:
            turn = number
            while loop.time() < deadline:
                started = time.perf_counter()
                try:
                    problem = await one(queries[turn % len(queries)])
                except httpx.HTTPError as error:
                    problem = type(error).__name__
                if problem is None:
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.failures[problem] += 1
                turn += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(number) for number in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


def write_report(out: Path, command: str, info: dict, baseline: dict[str, float], results: list[LoadResult], loads: tuple) -> None:
    encoder = info["encoder"]
    lines = [
        "# Search server under load",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_summary(('faiss-cpu', 'httpx', 'uvicorn'))}.",
        f"Load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f} (other jobs share this machine).",
        "",
        f"Collection: {info['items']} items, {encoder['backbone']} / {encoder['pooling']} / {encoder['image_size']} px, "
        f"index {info['spaces']['image']['index']}, {info['spaces']['image']['dim']}-d. Server: `cbir serve` on "
        f"{LOOPBACK}, one process; the load generator (httpx, asyncio) runs on the same machine and shares its cores.",
        "",
        "Modes: **image** uploads a collection JPEG (decode, encode with the CNN, search); **item** searches by item id "
        "(stored vector, no encoding). k = 10. A request counts as failed unless it answers 200 with the query's own "
        "item ranked first.",
        "",
        "Baseline, same run: the server's own `CollectionService` in a fresh process, called from one worker thread, "
        "one query at a time, no HTTP: "
        + ", ".join(f"{mode} {rate:.1f} searches/s" for mode, rate in baseline.items())
        + " (the last with FAISS's default OpenMP threads per search instead of one). The last column is the "
        "server's requests/s divided by the baseline of its mode.",
        "",
        "| mode | clients | requests | requests/s | p50 ms | p95 ms | p99 ms | failed | vs in-process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        rate = len(result.latencies) / result.seconds
        failed = sum(result.failures.values())
        details = f" ({', '.join(f'{k}: {v}' for k, v in result.failures.items())})" if failed else ""
        lines.append(
            f"| {result.mode} | {result.clients} | {result.requests} | {rate:.1f} | {result.percentile(50):.1f} | "
            f"{result.percentile(95):.1f} | {result.percentile(99):.1f} | {failed}{details} | {rate / baseline[result.mode]:.2f} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="Images to index and query with.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cbir-bench-serve"), help="Where the collection is kept.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each measurement.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="Concurrent clients to try.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"{args.images} does not exist: pass --images DIR (benchmark data lives in ../shared/data)")

    command = "PYTHONPATH=$PWD python bench/serve/run.py " + shlex.join(sys.argv[1:])
    path, queries = prepare(args.images, args.work)
    load_before = os.getloadavg()[0]
    baseline = in_process_baseline(path, queries, args.seconds)
    console.print("in-process baseline: " + ", ".join(f"{mode} {rate:.1f}/s" for mode, rate in baseline.items()))

    port = free_port()
    server = start_server(path, port)
    base = f"http://{LOOPBACK}:{port}"
    results = []
    try:
        info = httpx.get(f"{base}/info").json()
        for mode in ("image", "item"):
            for clients in args.clients:
                asyncio.run(fire(base, mode, clients, 1.0, queries))  # warm-up, not counted
                result = asyncio.run(fire(base, mode, clients, args.seconds, queries))
                results.append(result)
                console.print(
                    f"{mode:5s} {clients:3d} clients: {len(result.latencies) / result.seconds:7.1f} req/s, "
                    f"p50 {result.percentile(50):7.1f} ms, p99 {result.percentile(99):7.1f} ms, "
                    f"failed {sum(result.failures.values())}"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    write_report(args.out, command, info, baseline, results, (load_before, os.getloadavg()[0]))
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()

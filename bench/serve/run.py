"""Load benchmark of ``cbir serve``: concurrent searches on 127.0.0.1, requests/s and latency percentiles.

    PYTHONPATH=$PWD python bench/serve/run.py [--images DIR] [--seconds 10] [--clients 1 8 32] [--large 100000]

Indexes the images (default: ../shared/data/corel1k) into a collection under
--work (once), measures the server's search service without HTTP as the baseline,
starts ``cbir serve`` on a free loopback port, and fires searches from 1, 8
and 32 concurrent clients for a bounded time each: uploads of collection
images ("image": decode + encode + search) and searches by item id ("item":
no encoding). Every answer is checked: HTTP 200 and the query itself ranked
first, or it counts as a failure. Then, in alternating rounds (median kept):
the HTTP implementation (h11 on asyncio against httptools on uvloop) for
searches by item, and image searches from 8 clients with and without batching
their pictures into shared forward passes; and searches by item on a
collection of --large items (the indexed photos plus synthetic descriptors).
Writes bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import shlex
import socket
import statistics
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
from cbir.collection.catalog import Item
from cbir.collection.collection import Collection
from cbir.collection.vector_index import LARGE_COLLECTION_INDEX
from cbir.io.images import is_image_path, load_image
from cbir.progress import console, progress_bar
from cbir.server.service import CollectionService
from cbir.server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES = default_data() / "corel1k"
LOOPBACK = "127.0.0.1"
QUERY_COUNT = 40
START_TIMEOUT_S = 300
LARGE_INDEX = LARGE_COLLECTION_INDEX
# A server with chosen settings, for the comparisons: path, port, HTTP implementation, event loop, query batch.
LAUNCHER = """
import sys, uvicorn
from cbir.server.app import create_app
from cbir.server.settings import ServerSettings
path, port, http, loop, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
app = create_app(path, settings=ServerSettings(max_query_batch=batch))
uvicorn.run(app, host="127.0.0.1", port=port, http=http, loop=loop, log_level="warning")
"""


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


def in_process_baseline(path: Path, queries: list[Query], seconds: float, modes: tuple[str, ...] = ("image", "item", "item, default threads")) -> dict[str, float]:
    """Searches per second through the server's ``CollectionService`` without HTTP, one at a time.

    Runs in a fresh process, in a worker thread as the server's endpoints do:
    "image" and "item" as the server is set up (FAISS on one thread per
    search), "item, default threads" with FAISS's default OpenMP threads.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure_in_process, (path, queries, seconds, modes))


def _measure_in_process(path: Path, queries: list[Query], seconds: float, modes: tuple[str, ...]) -> dict[str, float]:
    import faiss

    service = CollectionService(path, ServerSettings(refresh_interval=None))
    size = service.encoder.spec.image_size
    variants = [
        variant for variant in (("image", "image", 1), ("item", "item", 1), ("item, default threads", "item", faiss.omp_get_max_threads()))
        if variant[0] in modes
    ]

    def search(query: Query, mode: str) -> list:
        if mode == "image":
            return service.search_vector(service.encode(load_image(query.data, min_side=size)), k=10)
        return service.search_item(query.item_id, k=10)

    def measure() -> dict[str, float]:
        search(queries[0], variants[0][1])
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


def start_server(path: Path, port: int, http: str | None = None, loop: str = "auto", batch: int = 8) -> subprocess.Popen:
    """``cbir serve`` on ``path``; with ``http``, uvicorn with that HTTP implementation, event loop and query batch."""
    if http is None:
        command = [sys.executable, "-m", "cbir.cli", "serve", "--collection", str(path), "--host", LOOPBACK, "--port", str(port)]
    else:
        command = [sys.executable, "-c", LAUNCHER, str(path), str(port), http, loop, str(batch)]
    environment = {key: value for key, value in os.environ.items() if key != "CBIR_TOKEN"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"http://{LOOPBACK}:{port}/info", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server did not answer within {START_TIMEOUT_S} s")


def stop(*servers: subprocess.Popen) -> None:
    for server in servers:
        server.terminate()
    for server in servers:
        server.wait(timeout=30)


def large_collection(path: Path, queries: list[Query], work: Path, count: int) -> tuple[Path, list[Query]]:
    """A collection of ``count`` items in a ``LARGE_INDEX`` index (once): the items of ``path`` and synthetic
    unit descriptors clustered around random centres; the queries re-pointed at its copies of their items."""
    target = work / f"collection-{count}"
    if not (target / "manifest.json").is_file():
        with Collection.open(path) as real:
            ids, vectors = real.vectors()
            items = real.catalog.get_items([int(i) for i in ids], with_vectors=True)
            spec = real.encoder_spec
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((2000, vectors.shape[1]), dtype=np.float32)
        with Collection.create(target, spec, LARGE_INDEX) as large:
            space = large.default_space
            with large.catalog.transaction():
                for item in items.values():
                    large.catalog.insert_item(Item(item.kind, item.uri, item.vector, item.content_hash), space, None)
                with progress_bar("synthetic items", unit="item") as update:
                    for start in range(0, count - len(items), 10_000):
                        size = min(10_000, count - len(items) - start)
                        block = centres[rng.integers(0, len(centres), size)] + 0.6 / np.sqrt(vectors.shape[1]) * rng.standard_normal(
                            (size, vectors.shape[1]), dtype=np.float32)
                        block /= np.linalg.norm(block, axis=1, keepdims=True)
                        for offset, vector in enumerate(block):
                            large.catalog.insert_item(Item("image", f"synthetic/{start + offset}.jpg", vector), space, None)
                        update(start + size, count - len(items))
            large.add([])  # builds the index from the catalog and saves it
    with Collection.open(target) as large:
        moved = [dataclasses.replace(query, item_id=large.catalog.item_ids_with_uri(query.uri)[0]) for query in queries]
        console.print(f"large collection: {large.info()['items']} items")
    return target, moved


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


def rate(result: LoadResult) -> float:
    return len(result.latencies) / result.seconds


def alternating(servers: dict[str, str], shots: list[tuple[str, str, int]], seconds: float, rounds: int, queries: list[Query]) -> dict:
    """Median requests/s and p95 ms of each (server, shot) over ``rounds``, the servers taking turns in each round."""
    found: dict[tuple[str, str], list[LoadResult]] = {}
    for _ in range(rounds):
        for label, mode, clients in shots:
            for name, base in servers.items():
                asyncio.run(fire(base, mode, clients, 0.5, queries))  # warm-up, not counted
                found.setdefault((name, label), []).append(asyncio.run(fire(base, mode, clients, seconds, queries)))
    return {
        key: {
            "rate": statistics.median(rate(result) for result in results),
            "p95": statistics.median(result.percentile(95) for result in results),
            "failed": sum(sum(result.failures.values()) for result in results),
        }
        for key, results in found.items()
    }


def compare_http(path: Path, queries: list[Query], seconds: float, rounds: int) -> dict:
    """Searches by item at 1 and 8 clients: uvicorn on h11 + asyncio against httptools + uvloop."""
    stacks = {"h11, asyncio": ("h11", "asyncio"), "httptools, uvloop": ("httptools", "uvloop")}
    ports = {name: free_port() for name in stacks}
    servers = {name: start_server(path, ports[name], *stack) for name, stack in stacks.items()}
    try:
        return alternating({name: f"http://{LOOPBACK}:{ports[name]}" for name in stacks},
                           [("1 client", "item", 1), ("8 clients", "item", 8)], seconds, rounds, queries)
    finally:
        stop(*servers.values())


def compare_batching(path: Path, queries: list[Query], seconds: float, rounds: int) -> dict:
    """Image searches at 8 clients with query pictures batched (up to 8 per pass) and not (1), and at 1 client."""
    batches = {"batched (8)": 8, "one per pass (1)": 1}
    ports = {name: free_port() for name in batches}
    servers = {name: start_server(path, ports[name], "auto", "auto", batch) for name, batch in batches.items()}
    try:
        return alternating({name: f"http://{LOOPBACK}:{ports[name]}" for name in batches},
                           [("1 client", "image", 1), ("8 clients", "image", 8)], seconds, rounds, queries)
    finally:
        stop(*servers.values())


def load_table(results: list[LoadResult], baseline: dict[str, float]) -> list[str]:
    lines = [
        "| mode | clients | requests | requests/s | p50 ms | p95 ms | p99 ms | failed | vs in-process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        failed = sum(result.failures.values())
        details = f" ({', '.join(f'{k}: {v}' for k, v in result.failures.items())})" if failed else ""
        lines.append(
            f"| {result.mode} | {result.clients} | {result.requests} | {rate(result):.1f} | {result.percentile(50):.1f} | "
            f"{result.percentile(95):.1f} | {result.percentile(99):.1f} | {failed}{details} | {rate(result) / baseline[result.mode]:.2f} |"
        )
    return lines


def comparison_table(found: dict, rows: list[str], columns: list[str]) -> list[str]:
    lines = ["| server | shot | requests/s | p95 ms | failed |", "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        for column in columns:
            cell = found[row, column]
            lines.append(f"| {row} | {column} | {cell['rate']:.1f} | {cell['p95']:.1f} | {cell['failed']} |")
    return lines


def write_report(out: Path, command: str, info: dict, baseline: dict[str, float], results: list[LoadResult], loads: list[float],
                 http: dict, batching: dict, large: tuple[int, dict[str, float], list[LoadResult]] | None, rounds: int) -> None:
    encoder = info["encoder"]
    by = {(result.mode, result.clients): result for result in results}
    summary = []
    for clients in (1, 8):
        if ("item", clients) in by:
            summary.append(f"- searches by item over HTTP / in-process, {clients} client{'s' if clients > 1 else ''}: "
                           f"**{rate(by['item', clients]) / baseline['item']:.2f}**")
    summary += [
        f"- httptools + uvloop / h11 + asyncio, searches by item: "
        f"**{http['httptools, uvloop', '1 client']['rate'] / http['h11, asyncio', '1 client']['rate']:.2f}x** at 1 client, "
        f"**{http['httptools, uvloop', '8 clients']['rate'] / http['h11, asyncio', '8 clients']['rate']:.2f}x** at 8",
        f"- image searches at 8 clients / at 1 client (serial), pictures batched: "
        f"**{batching['batched (8)', '8 clients']['rate'] / batching['batched (8)', '1 client']['rate']:.2f}x**; "
        f"batched / one picture per pass at 8 clients: "
        f"**{batching['batched (8)', '8 clients']['rate'] / batching['one per pass (1)', '8 clients']['rate']:.2f}x**",
    ]
    if large is not None:
        count, large_baseline, large_results = large
        found = {result.clients: result for result in large_results}
        if 8 in found:
            summary.append(f"- searches by item on {count:,} items at 8 clients: p95 **{found[8].percentile(95):.1f} ms**, "
                           f"{rate(found[8]) / large_baseline['item']:.2f} of the in-process rate")
    lines = [
        "# Search server under load",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_summary(('faiss-cpu', 'httpx', 'uvicorn', 'httptools', 'uvloop'))}.",
        f"Load average (1 min) at the start, between parts and at the end: {' / '.join(f'{load:.2f}' for load in loads)} "
        "(other jobs share this machine: absolute rates are noisy, ratios measured in one run less so).",
        "",
        "## Ratios",
        "",
        *summary,
        "",
        "## Load",
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
        + ", ".join(f"{mode} {value:.1f} searches/s" for mode, value in baseline.items())
        + " (the last with FAISS's default OpenMP threads per search instead of one). The last column is the "
        "server's requests/s divided by the baseline of its mode.",
        "",
        *load_table(results, baseline),
        "",
        "## HTTP implementation",
        "",
        f"Searches by item, uvicorn with each HTTP parser and event loop (`cbir serve` takes httptools and uvloop when "
        f"installed: the `server` extra installs them); both servers up, taking turns; median of {rounds} rounds.",
        "",
        *comparison_table(http, ["h11, asyncio", "httptools, uvloop"], ["1 client", "8 clients"]),
        "",
        "## Image searches batched",
        "",
        "Uploads of collection JPEGs; the server batches the pictures of concurrent requests into shared forward "
        "passes (`max_query_batch` 8, the default) or runs one per pass (1); both servers up, taking turns; median of "
        f"{rounds} rounds.",
        "",
        *comparison_table(batching, ["batched (8)", "one per pass (1)"], ["1 client", "8 clients"]),
        "",
    ]
    if large is not None:
        count, large_baseline, large_results = large
        lines += [
            f"## Searches by item on {count:,} items",
            "",
            f"The collection's items plus synthetic unit descriptors of the same dimension clustered around 2000 random "
            f"centres, in a `{LARGE_INDEX}` index at its stored search effort; queries are the real items. In-process "
            f"baseline, same run: {large_baseline['item']:.1f} searches/s.",
            "",
            *load_table(large_results, large_baseline),
            "",
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="Images to index and query with.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cbir-bench-serve"), help="Where the collections are kept.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each measurement.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="Concurrent clients to try.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of the comparisons (median kept).")
    parser.add_argument("--large", type=int, default=100_000, help="Items of the large collection (0: skip it).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"{args.images} does not exist: pass --images DIR (benchmark data lives in ../shared/data)")

    command = "PYTHONPATH=$PWD python bench/serve/run.py " + shlex.join(sys.argv[1:])
    path, queries = prepare(args.images, args.work)
    loads = [os.getloadavg()[0]]
    baseline = in_process_baseline(path, queries, args.seconds)
    console.print("in-process baseline: " + ", ".join(f"{mode} {value:.1f}/s" for mode, value in baseline.items()))

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
                    f"{mode:5s} {clients:3d} clients: {rate(result):7.1f} req/s, "
                    f"p50 {result.percentile(50):7.1f} ms, p95 {result.percentile(95):7.1f} ms, "
                    f"failed {sum(result.failures.values())}"
                )
    finally:
        stop(server)
    loads.append(os.getloadavg()[0])
    shot = max(2.0, args.seconds / 3)
    http = compare_http(path, queries, shot, args.rounds)
    console.print(f"HTTP implementations: {http}")
    batching = compare_batching(path, queries, shot, args.rounds)
    console.print(f"batching: {batching}")
    loads.append(os.getloadavg()[0])
    large = None
    if args.large:
        large_path, large_queries = large_collection(path, queries, args.work, args.large)
        large_baseline = in_process_baseline(large_path, large_queries, args.seconds, ("item",))
        port = free_port()
        server = start_server(large_path, port)
        try:
            large_results = []
            for clients in (1, 8):
                asyncio.run(fire(f"http://{LOOPBACK}:{port}", "item", clients, 1.0, large_queries))
                large_results.append(asyncio.run(fire(f"http://{LOOPBACK}:{port}", "item", clients, args.seconds, large_queries)))
                console.print(f"large, {clients} clients: {rate(large_results[-1]):.1f} req/s, p95 {large_results[-1].percentile(95):.1f} ms")
        finally:
            stop(server)
        large = (args.large, large_baseline, large_results)
    loads.append(os.getloadavg()[0])
    write_report(args.out, command, info, baseline, results, loads, http, batching, large, args.rounds)
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()

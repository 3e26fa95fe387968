"""Load benchmark of ``cbir serve``: concurrent searches on 127.0.0.1, requests/s and latency percentiles.

    PYTHONPATH=$PWD python bench/serve/run.py [--images DIR] [--seconds 5] [--clients 1 8] [--rounds 3] [--large 100000]

Indexes the images (default: ../shared/data/corel1k) into a collection under
--work (once) and starts ``cbir serve`` on a free loopback port. In each of
--rounds rounds it measures the server's search service without HTTP (the
baseline, in a separate process kept for the rounds) and then fires searches
from each number of concurrent clients for a bounded time: uploads of
collection images ("image": decode + encode + search) and searches by item id
("item": no encoding); medians over the rounds are kept. Every answer is
checked: HTTP 200 and the query itself ranked first, or it counts as a
failure. The load comes from a lean keep-alive client (``bench/serve/client.py``);
httpx is measured once beside it. Then, in alternating rounds (median kept):
the HTTP implementation (h11 on asyncio against httptools on uvloop) for
searches by item, image searches with their pictures batched into shared
forward passes or one per pass; and searches by item on a collection of
--large items (the indexed photos plus synthetic descriptors), baseline and
server taking turns. Writes bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
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
from bench.serve.client import Connection, form_request, upload_request
from bench.serve.client import run as run_loop
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
BATCHES = {"batched (8)": 8, "batched (4)": 4, "one per pass (1)": 1}  # max_query_batch of the compared servers
# A server with chosen settings, for the comparisons: path, port, HTTP implementation, event loop, query batch.
LAUNCHER = """
import sys, uvicorn
from cbir.server.app import create_app
from cbir.server.settings import ServerSettings
path, port, http, loop, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
app = create_app(path, settings=ServerSettings(max_query_batch=batch))
uvicorn.run(app, host="127.0.0.1", port=port, http=http, loop=loop, log_level="warning", access_log=False)
"""
# The HTTP floor: the same uvicorn (httptools, uvloop) and client, an app that searches nothing. It reads the form and
# answers a JSON body the size of a real answer (10 results) that names the item asked for first.
FLOOR_LAUNCHER = """
import sys, json, uvicorn
from urllib.parse import parse_qsl
async def app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    item = int(dict(parse_qsl(body.decode())).get("item_id", 0))
    answer = json.dumps({"query": f"item:{item}", "results": [{"item_id": item, "score": 1.0, "uri": "/" + "x" * 90,
                         "kind": "image", "space": "image", "box": None, "metadata": {"width": 384, "height": 256}}] * 10,
                         "timing": {"search": 0.0}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop", log_level="warning",
            access_log=False, lifespan="off")
"""
FLOOR = "no search (HTTP floor)"


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

    def record(self, problem: str | None, started: float) -> None:
        """One answered request: its latency when it was right, else its problem counted."""
        if problem is None:
            self.latencies.append(time.perf_counter() - started)
        else:
            self.failures[problem] += 1


@dataclass
class Shot:
    """One (mode, clients) measured in every round, each beside that round's in-process baseline."""

    mode: str
    clients: int
    results: list[LoadResult] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)

    def median(self, value) -> float:
        return statistics.median(value(result) for result in self.results)

    @property
    def ratio(self) -> float:
        """Median over the rounds of requests/s divided by the same round's in-process searches/s."""
        return statistics.median(rate(result) / baseline for result, baseline in zip(self.results, self.baselines))


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


class InProcess:
    """The server's own ``CollectionService`` in a fresh process, kept for the rounds: searches/s without HTTP.

    Called from one worker thread, one query at a time, as the server's
    endpoints run: "image" and "item" as the server is set up (FAISS on one
    thread per search), "item, default threads" with FAISS's default OpenMP threads.
    """

    def __init__(self, path: Path):
        self.pool = multiprocessing.get_context("spawn").Pool(1, initializer=_open_service, initargs=(path,))

    def measure(self, queries: list[Query], seconds: float, modes: tuple[str, ...]) -> dict[str, float]:
        return self.pool.apply(_measure_in_process, (queries, seconds, modes))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


_SERVICE: CollectionService | None = None


def _open_service(path: Path) -> None:
    global _SERVICE
    _SERVICE = CollectionService(path, ServerSettings(refresh_interval=None))


def _measure_in_process(queries: list[Query], seconds: float, modes: tuple[str, ...]) -> dict[str, float]:
    import faiss

    service = _SERVICE
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
        rates = {}
        for label, mode, threads in variants:
            service.settings = dataclasses.replace(service.settings, search_threads=threads)
            search(queries[0], mode)
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
    """``cbir serve`` on ``path``; with ``http``, uvicorn with that HTTP implementation, event loop and query batch;
    with ``http`` ``floor``, the server that searches nothing (``FLOOR_LAUNCHER``)."""
    if http is None:
        command = [sys.executable, "-m", "cbir.cli", "serve", "--collection", str(path), "--host", LOOPBACK, "--port", str(port)]
    elif http == "floor":
        command = [sys.executable, "-c", FLOOR_LAUNCHER, str(port)]
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



def _problem(status: int, body: bytes, query: Query) -> str | None:
    if status != 200:
        return f"HTTP {status}"
    if json.loads(body)["results"][0]["item_id"] != query.item_id:
        return "wrong first result"
    return None


async def fire(port: int, mode: str, clients: int, seconds: float, queries: list[Query], client: str = "lean") -> LoadResult:
    """``clients`` loops, each on its own keep-alive connection, sending searches back to back until
    ``seconds`` have passed; ``client``: the lean client or httpx."""
    if client == "httpx":
        return await _fire_httpx(f"http://{LOOPBACK}:{port}", mode, clients, seconds, queries)
    requests = [
        upload_request(LOOPBACK, port, "/search", "image", query.name, query.data, {"k": 10}) if mode == "image"
        else form_request(LOOPBACK, port, "/search", {"item_id": query.item_id, "k": 10})
        for query in queries
    ]
    result = LoadResult(mode, clients, 0.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def worker(number: int) -> None:
        connection = Connection(LOOPBACK, port)
        turn = number
        while loop.time() < deadline:
            query = queries[turn % len(queries)]
            started = time.perf_counter()
            try:
                problem = _problem(*await connection.send(requests[turn % len(queries)]), query)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
                problem = type(error).__name__
            result.record(problem, started)
            turn += clients
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(number) for number in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


async def _fire_httpx(base: str, mode: str, clients: int, seconds: float, queries: list[Query]) -> LoadResult:
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
            return _problem(response.status_code, response.content, query)

        async def worker(number: int) -> None:
            turn = number
            while loop.time() < deadline:
                started = time.perf_counter()
                try:
                    problem = await one(queries[turn % len(queries)])
                except httpx.HTTPError as error:
                    problem = type(error).__name__
                result.record(problem, started)
                turn += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(number) for number in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


def rate(result: LoadResult) -> float:
    return len(result.latencies) / result.seconds


def measure(port: int, mode: str, clients: int, seconds: float, queries: list[Query], client: str = "lean") -> LoadResult:
    """One shot after a short warm-up that is not counted."""
    runner = run_loop if client == "lean" else asyncio.run  # httpx as it was used before: on asyncio's loop
    runner(fire(port, mode, clients, min(1.0, seconds / 4), queries, client))
    return runner(fire(port, mode, clients, seconds, queries, client))


def rounds_beside_baseline(port: int, baseline: InProcess, shots: list[tuple[str, int]], seconds: float, rounds: int,
                           queries: list[Query], modes: tuple[str, ...]) -> tuple[list[Shot], dict[str, float]]:
    """Each round: the in-process baseline of ``modes``, then every shot on the server; the shots with the
    baseline of their round, and the median baseline of each mode."""
    found = [Shot(mode, clients) for mode, clients in shots]
    measured: dict[str, list[float]] = {}
    for number in range(rounds):
        rates = baseline.measure(queries, seconds, modes)
        for mode, value in rates.items():
            measured.setdefault(mode, []).append(value)
        for shot in found:
            shot.results.append(measure(port, shot.mode, shot.clients, seconds, queries))
            shot.baselines.append(rates[shot.mode])
            last = shot.results[-1]
            console.print(
                f"round {number + 1}: {shot.mode:5s} {shot.clients:3d} clients: {rate(last):7.1f} req/s "
                f"(in-process {rates[shot.mode]:.1f}/s), p50 {last.percentile(50):7.1f} ms, p95 {last.percentile(95):7.1f} ms, "
                f"failed {sum(last.failures.values())}"
            )
    return found, {mode: statistics.median(values) for mode, values in measured.items()}


def alternating(servers: dict[str, int], shots: list[tuple[str, str, int]], seconds: float, rounds: int, queries: list[Query]) -> dict:
    """Median requests/s and p95 ms of each (server, shot) over ``rounds``, the servers taking turns in each round."""
    found: dict[tuple[str, str], list[LoadResult]] = {}
    for _ in range(rounds):
        for label, mode, clients in shots:
            for name, port in servers.items():
                found.setdefault((name, label), []).append(measure(port, mode, clients, seconds, queries))
    return {
        key: {
            "rate": statistics.median(rate(result) for result in results),
            "p95": statistics.median(result.percentile(95) for result in results),
            "failed": sum(sum(result.failures.values()) for result in results),
        }
        for key, results in found.items()
    }


def compare_clients(port: int, queries: list[Query], seconds: float) -> dict:
    """Searches by item at 1 and 8 clients from the lean client and from httpx, once each."""
    found = {}
    for clients in (1, 8):
        for client in ("lean", "httpx"):
            result = measure(port, "item", clients, seconds, queries, client)
            found[client, clients] = {"rate": rate(result), "p95": result.percentile(95), "failed": sum(result.failures.values())}
    return found


def compare_http(path: Path, queries: list[Query], seconds: float, rounds: int) -> dict:
    """Searches by item at 1 and 8 clients: uvicorn on h11 + asyncio against httptools + uvloop, and the HTTP floor."""
    stacks = {"h11, asyncio": ("h11", "asyncio"), "httptools, uvloop": ("httptools", "uvloop"), FLOOR: ("floor", "uvloop")}
    ports = {name: free_port() for name in stacks}
    servers = {name: start_server(path, ports[name], *stack) for name, stack in stacks.items()}
    try:
        return alternating(ports, [("1 client", "item", 1), ("8 clients", "item", 8)], seconds, rounds, queries)
    finally:
        stop(*servers.values())


def compare_batching(path: Path, queries: list[Query], seconds: float, rounds: int) -> dict:
    """Image searches at 1 and 8 clients with query pictures batched (up to 8 or 4 per pass) and not (1)."""
    ports = {name: free_port() for name in BATCHES}
    servers = {name: start_server(path, ports[name], "auto", "auto", batch) for name, batch in BATCHES.items()}
    try:
        return alternating(ports, [("1 client", "image", 1), ("8 clients", "image", 8)], seconds, rounds, queries)
    finally:
        stop(*servers.values())


def load_table(shots: list[Shot]) -> list[str]:
    lines = [
        "| mode | clients | requests | requests/s | p50 ms | p95 ms | p99 ms | failed | vs in-process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for shot in shots:
        failures = sum((result.failures for result in shot.results), Counter())
        failed = sum(failures.values())
        details = f" ({', '.join(f'{k}: {v}' for k, v in failures.items())})" if failed else ""
        lines.append(
            f"| {shot.mode} | {shot.clients} | {sum(result.requests for result in shot.results)} | {shot.median(rate):.1f} | "
            f"{shot.median(lambda r: r.percentile(50)):.1f} | {shot.median(lambda r: r.percentile(95)):.1f} | "
            f"{shot.median(lambda r: r.percentile(99)):.1f} | {failed}{details} | {shot.ratio:.2f} |"
        )
    return lines


def comparison_table(found: dict, rows: list[str], columns: list, heading: str = "server") -> list[str]:
    lines = [f"| {heading} | shot | requests/s | p95 ms | failed |", "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        for column in columns:
            cell = found[row, column]
            shot = column if isinstance(column, str) else f"{column} client{'s' if column > 1 else ''}"
            lines.append(f"| {row} | {shot} | {cell['rate']:.1f} | {cell['p95']:.1f} | {cell['failed']} |")
    return lines


def floor_line(http: dict, in_process: float) -> str:
    """Milliseconds per search by item at 1 client for cbir and the HTTP floor, and the best ratio to in-process they allow."""
    cbir, floor = http["httptools, uvloop", "1 client"]["rate"], http[FLOOR, "1 client"]["rate"]
    return (
        f"- searches by item at 1 client, ms per request: cbir serve {1000 / cbir:.2f}, the HTTP floor (the same "
        f"server and client, no search) {1000 / floor:.2f}, the search in-process {1000 / in_process:.2f}; so on this "
        f"HTTP stack the 1-client ratio to in-process cannot exceed **{floor / (floor + in_process):.2f}**"
    )


def write_report(out: Path, command: str, info: dict, shots: list[Shot], baseline: dict[str, float], loads: list[tuple[str, float]],
                 clients: dict, http: dict, batching: dict, large: tuple[int, list[Shot], float] | None, rounds: int) -> None:
    encoder = info["encoder"]
    by = {(shot.mode, shot.clients): shot for shot in shots}
    summary = []
    for count in (1, 8):
        if ("item", count) in by:
            summary.append(f"- searches by item over HTTP / in-process, {count} client{'s' if count > 1 else ''}: **{by['item', count].ratio:.2f}**")
    if ("image", 1) in by and ("image", 8) in by:
        summary.append(
            f"- image searches at 8 clients / at 1 client (serial), `cbir serve` as shipped: "
            f"**{by['image', 8].median(rate) / by['image', 1].median(rate):.2f}x**"
        )
    if large is not None:
        count, large_shots, _ = large
        found = {shot.clients: shot for shot in large_shots}
        if 8 in found:
            summary.append(f"- searches by item on {count:,} items at 8 clients: p95 **{found[8].median(lambda r: r.percentile(95)):.1f} ms**, "
                           f"{found[8].ratio:.2f} of the in-process rate")
    summary += [
        "- image searches at 8 clients / at 1 client, alternating servers: "
        + ", ".join(f"{name} **{batching[name, '8 clients']['rate'] / batching[name, '1 client']['rate']:.2f}x**" for name in BATCHES),
        f"- httptools + uvloop / h11 + asyncio, searches by item: "
        f"**{http['httptools, uvloop', '1 client']['rate'] / http['h11, asyncio', '1 client']['rate']:.2f}x** at 1 client, "
        f"**{http['httptools, uvloop', '8 clients']['rate'] / http['h11, asyncio', '8 clients']['rate']:.2f}x** at 8",
        floor_line(http, baseline["item"]),
        f"- the load generator, lean client / httpx, searches by item: **{clients['lean', 1]['rate'] / clients['httpx', 1]['rate']:.2f}x** "
        f"the requests/s at 1 client, **{clients['lean', 8]['rate'] / clients['httpx', 8]['rate']:.2f}x** at 8",
    ]
    lines = [
        "# Search server under load",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_summary(('faiss-cpu', 'httpx', 'uvicorn', 'httptools', 'uvloop'))}.",
        "Load average (1 min) at the start and after each part: " + ", ".join(f"{value:.2f} ({part})" for part, value in loads)
        + " (other jobs share this machine: absolute rates are noisy; each ratio compares figures measured side by side).",
        "",
        "## Ratios",
        "",
        *summary,
        "",
        "## Load",
        "",
        f"Collection: {info['items']} items, {encoder['backbone']} / {encoder['pooling']} / {encoder['image_size']} px, "
        f"index {info['spaces']['image']['index']}, {info['spaces']['image']['dim']}-d. Server: `cbir serve` on "
        f"{LOOPBACK}, one process. The load generator runs on the same machine and shares its cores: a lean keep-alive "
        "HTTP/1.1 client on uvloop, each request encoded before the clock starts (`bench/serve/client.py`; httpx on "
        "asyncio, used before, is compared below).",
        "",
        "Modes: **image** uploads a collection JPEG (decode, encode with the CNN, search); **item** searches by item id "
        "(stored vector, no encoding). k = 10. A request counts as failed unless it answers 200 with the query's own "
        "item ranked first.",
        "",
        f"{rounds} rounds; in each, the baseline and then every row. Baseline: the server's own `CollectionService` in a "
        "separate process, called from one worker thread, one query at a time, no HTTP; medians over the rounds: "
        + ", ".join(f"{mode} {value:.1f} searches/s" for mode, value in baseline.items())
        + " (the last with FAISS's default OpenMP threads per search instead of one). Each row gives the median over the "
        "rounds; the last column is the median of each round's requests/s divided by that round's baseline of its mode; "
        "requests and failed are totals.",
        "",
        *load_table(shots),
        "",
        "## Load generator",
        "",
        "Searches by item on the same server, from the lean client (on uvloop) and from httpx's `AsyncClient` (on "
        "asyncio's loop, as before; one connection per client, kept alive), once each: the load generator shares the 2 "
        "cores with the server, so a heavier client lowers the server's figures.",
        "",
        *comparison_table(clients, ["lean", "httpx"], [1, 8], heading="client"),
        "",
        "## HTTP implementation",
        "",
        f"Searches by item, uvicorn with each HTTP parser and event loop (`cbir serve` takes httptools and uvloop when "
        f"installed: the `server` extra installs them), and the HTTP floor: the same uvicorn (httptools, uvloop) and "
        "client with an app that searches nothing, reading the form and answering a JSON body the size of a real "
        f"answer; all servers up, taking turns; median of {rounds} rounds.",
        "",
        *comparison_table(http, ["h11, asyncio", "httptools, uvloop", FLOOR], ["1 client", "8 clients"]),
        "",
        "## Image searches batched",
        "",
        "Uploads of collection JPEGs; the server runs the pictures of concurrent requests together in its next forward "
        "pass, at most `max_query_batch` of them (8, 4), or one per pass (1); the servers up together, taking turns; "
        f"median of {rounds} rounds.",
        "",
        *comparison_table(batching, list(BATCHES), ["1 client", "8 clients"]),
        "",
    ]
    if large is not None:
        count, large_shots, large_baseline = large
        lines += [
            f"## Searches by item on {count:,} items",
            "",
            f"The collection's items plus synthetic unit descriptors of the same dimension clustered around 2000 random "
            f"centres, in a `{LARGE_INDEX}` index at its stored search effort; queries are the real items. {rounds} rounds, "
            f"baseline and server taking turns as above; in-process baseline (median): {large_baseline:.1f} searches/s.",
            "",
            *load_table(large_shots),
            "",
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="Images to index and query with.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cbir-bench-serve"), help="Where the collections are kept.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Duration of each measurement.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="Concurrent clients to try.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of every measurement (median kept).")
    parser.add_argument("--large", type=int, default=100_000, help="Items of the large collection (0: skip it).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"{args.images} does not exist: pass --images DIR (benchmark data lives in ../shared/data)")

    command = "PYTHONPATH=$PWD python bench/serve/run.py " + shlex.join(sys.argv[1:])
    path, queries = prepare(args.images, args.work)
    loads = [("start", os.getloadavg()[0])]
    baseline = InProcess(path)
    port = free_port()
    server = start_server(path, port)
    try:
        info = httpx.get(f"http://{LOOPBACK}:{port}/info").json()
        shots, medians = rounds_beside_baseline(
            port, baseline, [(mode, clients) for mode in ("image", "item") for clients in args.clients], args.seconds,
            args.rounds, queries, ("image", "item", "item, default threads"),
        )
        loads.append(("load", os.getloadavg()[0]))
        clients = compare_clients(port, queries, args.seconds)
        console.print(f"clients: {clients}")
        loads.append(("load generator", os.getloadavg()[0]))
    finally:
        stop(server)
        baseline.close()
    shot = max(2.0, args.seconds / 2)
    http = compare_http(path, queries, shot, args.rounds)
    console.print(f"HTTP implementations: {http}")
    loads.append(("HTTP implementation", os.getloadavg()[0]))
    batching = compare_batching(path, queries, shot, args.rounds)
    console.print(f"batching: {batching}")
    loads.append(("batching", os.getloadavg()[0]))
    large = None
    if args.large:
        large_path, large_queries = large_collection(path, queries, args.work, args.large)
        large_baseline = InProcess(large_path)
        port = free_port()
        server = start_server(large_path, port)
        try:
            large_shots, large_medians = rounds_beside_baseline(
                port, large_baseline, [("item", 1), ("item", 8)], args.seconds, args.rounds, large_queries, ("item",)
            )
        finally:
            stop(server)
            large_baseline.close()
        large = (args.large, large_shots, large_medians["item"])
        loads.append((f"{args.large:,} items", os.getloadavg()[0]))
    write_report(args.out, command, info, shots, medians, loads, clients, http, batching, large, args.rounds)
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()

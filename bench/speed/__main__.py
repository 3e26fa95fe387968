"""Speed: extraction (naive baseline, cbir pipeline, forward-only ceiling), reduced precision, FAISS search at scale,
and the latency of one `cbir search` from the command line.

    python -m bench.speed [--data DIR] [--images N] [--sizes 10000 100000 1000000]

Writes bench/results/speed.md. Every timing is the median of ``--rounds``
alternating runs, so that other load on the machine hurts all methods alike.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import pstats
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from bench.common import RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from bench.speed import jpeg, peers, precision, threads
from bench.vectors import clustered_vectors
from cbir.collection.vector_index import DEFAULT_SEARCH_EFFORT, LARGE_COLLECTION_INDEX, REFINE_K_FACTOR, VectorIndex
from cbir.encoders.backbones import create_backbone
from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, Encoder, EncoderSpec, image_to_tensor
from cbir.encoders.pooling import make_pooling
from cbir.core.hashing import content_hash
from cbir.pipelines.image import extract, extract_sources, image_workers
from cbir.pipelines.sources import file_sources
from cbir.io.images import load_image
from cbir.progress import console

LARGE_SIDE = (4243, 2829)  # 12.0 megapixels, the 3:2 aspect of the Corel photos
DIM = 1280  # the default encoder's descriptors (EfficientNet-Lite0)
QUERIES = 1000
K = 10
HNSW_BUILD_BUDGET_S = 900
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
DECODING_WORKERS = (0, 1, 2)
LATENCY_ROUNDS = 5
SECTIONS = ("extraction", "precision", "search", "large", "latency", "threads", "peers")
LARGE_COUNT = 1_000_000
LARGE_EFFORTS = (8, 16, 32)
SINGLE_QUERIES = 200  # searched one at a time by the large index
SINGLE_EXACT_QUERIES = 20  # and by exact search (each scans every vector)
SERVE_START_S = 600


# extraction -------------------------------------------------------------------
def corel_sample(data: Path, count: int) -> list[Path]:
    """``count`` Corel photos spread evenly over the 10 classes."""
    with open(data / "corel1k" / "labels.csv", newline="") as handle:
        paths = [data / "corel1k" / row["filename"] for row in csv.DictReader(handle)]
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def large_jpegs(sources: list[Path], folder: Path) -> list[Path]:
    """Upscale photos to 12 megapixels and save them as quality-90 JPEGs (once)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for source in sources:
        target = folder / f"{source.stem}_12mp.jpg"
        if not target.is_file():
            image = Image.open(source).convert("RGB")
            size = LARGE_SIDE if image.width >= image.height else LARGE_SIDE[::-1]
            image.resize(size, Image.BICUBIC).save(target, quality=90)
        made.append(target)
    return made


def pipeline_rate(encoder: Encoder, paths: list[Path], workers: int | None = None) -> float:
    """cbir's pipeline end to end: read, hash, decode (JPEG draft), resize; batched forward."""
    started = time.perf_counter()
    count = sum(len(batch.vectors) for batch in extract_sources(encoder, file_sources(paths), workers=workers))
    return count / (time.perf_counter() - started)


def decoding_sweep(encoder: Encoder, sets: dict[str, list[Path]], rounds: int) -> list[list[str]]:
    """The pipeline's images/s by number of decoding worker processes (0: in-process), median of ``rounds``."""
    rates: dict[tuple, list[float]] = {(name, workers): [] for name in sets for workers in DECODING_WORKERS}
    for _ in range(rounds):
        for name, paths in sets.items():
            for workers in DECODING_WORKERS:
                rates[name, workers].append(pipeline_rate(encoder, paths, workers))
    return [[name, *(f"{statistics.median(rates[name, workers]):.1f}" for workers in DECODING_WORKERS)] for name in sets]


def ready_tensors(encoder: Encoder, paths: list[Path]) -> list[torch.Tensor]:
    """The tensors the pipeline would feed the network, made beforehand."""
    tensors = []
    for path in paths:
        image = load_image(path, min_side=encoder.spec.image_size)
        tensors.append(image_to_tensor(image, encoder.target_size(*image.size), encoder.input_config))
    return tensors


@torch.inference_mode()
def ceiling_rate(encoder: Encoder, tensors: list[torch.Tensor], batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """The forward pass alone on ready tensors, same batches and shapes as the pipeline."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault(tuple(tensor.shape), []).append(tensor)
    batches = [
        torch.stack(group[i : i + batch_size]).contiguous(memory_format=torch.channels_last)
        for group in groups.values()
        for i in range(0, len(group), batch_size)
    ]
    started = time.perf_counter()
    for batch in batches:
        encoder(batch)
    return len(tensors) / (time.perf_counter() - started)


class NaiveExtractor:
    """What a first attempt looks like: full PIL decode, torchvision Resize + CenterCrop,
    one image at a time, NCHW float32. Same backbone and pooling as the pipeline.
    Without ``crop`` it keeps the whole resized image, as the pipeline does (same pixels per image)."""

    def __init__(self, spec: EncoderSpec, crop: bool = True):
        self.backbone, config = create_backbone(spec.backbone, spec.weights)
        self.pooling = make_pooling(spec.pooling, spec.gem_p)
        self.transform = transforms.Compose([
            transforms.Resize(spec.image_size), *([transforms.CenterCrop(spec.image_size)] if crop else []),
            transforms.ToTensor(), transforms.Normalize(config.mean, config.std),
        ])

    @torch.inference_mode()
    def rate(self, paths: list[Path]) -> float:
        started = time.perf_counter()
        for path in paths:
            image = Image.open(path).convert("RGB")
            F.normalize(self.pooling(self.backbone(self.transform(image).unsqueeze(0))), dim=-1).numpy()
        return len(paths) / (time.perf_counter() - started)


def measure_extraction(encoders: dict[str, Encoder], naives: dict[str, NaiveExtractor], paths: list[Path], rounds: int) -> dict[str, float]:
    """Median images/s of each method over alternating rounds: the pipeline, the forward pass alone of each
    encoder (``ceiling`` is the pipeline's), and the naive baselines."""
    tensors = ready_tensors(encoders["ceiling"], paths)
    for encoder in encoders.values():
        ceiling_rate(encoder, tensors[:8])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in ["pipeline", *encoders, *naives]}
    for _ in range(rounds):
        for name, encoder in encoders.items():
            rates[name].append(ceiling_rate(encoder, tensors))
        rates["pipeline"].append(pipeline_rate(encoders["ceiling"], paths))
        for name, naive in naives.items():
            rates[name].append(naive.rate(paths))
    return {name: statistics.median(values) for name, values in rates.items()}


def batch_size_sweep(fused: Encoder, unfused: Encoder, paths: list[Path], rounds: int) -> list[list[str]]:
    """Forward-only images/s by batch size: the pipeline's network, and without the inference rewrites
    in both memory layouts (median of ``rounds``)."""
    tensors = ready_tensors(fused, paths)
    rows = []
    for name, encoder, memory_format in (
        ("rewritten for inference, channels-last", fused, torch.channels_last),
        ("as trained, channels-last", unfused, torch.channels_last),
        ("as trained, NCHW", unfused, torch.contiguous_format),
    ):
        encoder.backbone.to(memory_format=memory_format)
        row = [name]
        for batch_size in BATCH_SIZES:
            ceiling_rate(encoder, tensors[: 2 * batch_size], batch_size)  # warm-up for this shape
            row.append(f"{statistics.median(ceiling_rate(encoder, tensors, batch_size) for _ in range(rounds)):.1f}")
        rows.append(row)
        encoder.backbone.to(memory_format=torch.channels_last)
    return rows


def stage_profile(encoder: Encoder, paths: list[Path]) -> list[list[str]]:
    """Milliseconds per image for each stage of the pipeline, measured one after the other in one process."""
    read = decode = prepare = 0.0
    tensors = []
    for path in paths:
        t0 = time.perf_counter()
        data = path.read_bytes()
        content_hash(data)
        t1 = time.perf_counter()
        image = load_image(data, min_side=encoder.spec.image_size)
        t2 = time.perf_counter()
        tensors.append(image_to_tensor(image, encoder.target_size(*image.size), encoder.input_config))
        t3 = time.perf_counter()
        read, decode, prepare = read + t1 - t0, decode + t2 - t1, prepare + t3 - t2
    forward = 1.0 / ceiling_rate(encoder, tensors)  # seconds per image
    per_image = [read / len(paths), decode / len(paths), prepare / len(paths), forward]
    names = ["read + hash", "decode (JPEG draft)", "resize + normalise", "forward (batched)"]
    total = sum(per_image)
    return [[name, f"{1000 * value:.1f}", f"{100 * value / total:.0f}%"] for name, value in zip(names, per_image)]


def pipeline_profile(encoder: Encoder, paths: list[Path]) -> str:
    """The main process's cumulative profile of the pipeline (decoding there too unless workers are started)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in extract(encoder, paths):
        pass
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(8)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    return "\n".join(lines[start : start + 9])


# search -----------------------------------------------------------------------
def index_bytes(index: VectorIndex) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.faiss"
        index.save(path)
        return path.stat().st_size


def measure_index(factory: str, database: np.ndarray, queries: np.ndarray, truth: np.ndarray, efforts: list[int]) -> list[dict]:
    """Build time, bytes per vector, and (per search effort) queries/s and recall@10 against exact search."""
    started = time.perf_counter()
    index = VectorIndex(factory, DIM)
    index.add(np.arange(len(database), dtype=np.int64), database)
    index.train_if_possible()
    build = time.perf_counter() - started
    size = index_bytes(index)
    rows = []
    for effort in efforts or [0]:
        if effort:
            index.set_search_effort(effort)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            _, found = index.search(queries, K)
            timings.append(time.perf_counter() - started)
        recall = np.mean([len(np.intersect1d(found[i], truth[i])) / K for i in range(len(queries))])
        rows.append({"factory": factory, "effort": effort, "build_s": build, "bytes": size / len(database),
                     "qps": len(queries) / statistics.median(timings), "recall": recall})
    return rows


def ivf_factory(count: int) -> str:
    lists = 256 if count <= 20_000 else 1024 if count <= 200_000 else 2048
    return f"IVF{lists},PQ64"


def measure_search(sizes: list[int]) -> tuple[list[list[str]], list[str]]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered_vectors(QUERIES, centres, rng)
    rows, notes = [], []
    hnsw_seconds_per_vector = None
    for count in sizes:
        console.print(f"search: {count:,} vectors")
        database = clustered_vectors(count, centres, rng)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(database)
        _, truth = exact.search(queries, K)
        del exact
        results = measure_index("Flat", database, queries, truth, [])
        estimate = None if hnsw_seconds_per_vector is None else hnsw_seconds_per_vector * count * 1.3
        if estimate is not None and estimate > HNSW_BUILD_BUDGET_S:
            notes.append(
                f"HNSW32 at {count:,} vectors not built: at the measured build rate it would take about "
                f"{estimate / 60:.0f} minutes on this machine (budget {HNSW_BUILD_BUDGET_S // 60} minutes)."
            )
        else:
            hnsw = measure_index("HNSW32", database, queries, truth, [64, 128])
            hnsw_seconds_per_vector = hnsw[0]["build_s"] / count
            results += hnsw
        results += measure_index(ivf_factory(count), database, queries, truth, [16, 64])
        results += measure_index(f"{ivf_factory(count)},Refine(SQ8)", database, queries, truth, [16, 64])
        exact_rate = results[0]["qps"]
        for result in results:
            effort = {"Flat": "exact", "HNSW32": f"efSearch {result['effort']}"}.get(result["factory"], f"nprobe {result['effort']}")
            rows.append([
                f"{count:,}", result["factory"], effort, f"{result['qps'] / exact_rate:.1f}x", f"{result['recall']:.3f}",
                f"{result['build_s']:.1f}", f"{result['bytes']:.0f}", f"{result['qps']:,.0f}",
            ])
        del database
    return rows, notes


# the large-collection index ------------------------------------------------------
def measure_large(count: int, exact_queries: int) -> tuple[list[list[str]], dict]:
    """Exact search against ``LARGE_COLLECTION_INDEX`` at several efforts on ``count`` clustered vectors, in two
    regimes: one query at a time (as ``cbir search`` and the server search) and the queries searched as one batch
    (exact search on its first ``exact_queries``): queries/s, the ratio to exact, recall@10."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered_vectors(QUERIES, centres, rng)
    console.print(f"large: {count:,} vectors")
    database = clustered_vectors(count, centres, rng)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(database)
    subset = queries[:exact_queries]
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        _, truth = exact.search(subset, K)
        timings.append(time.perf_counter() - started)
    exact_batch = len(subset) / statistics.median(timings)
    exact_single = one_at_a_time_rate(exact.search, queries[:SINGLE_EXACT_QUERIES])
    del exact
    started = time.perf_counter()
    index = VectorIndex(LARGE_COLLECTION_INDEX, DIM)
    index.add(np.arange(len(database), dtype=np.int64), database)
    index.train_if_possible()
    build = time.perf_counter() - started
    size = index_bytes(index)
    del database
    rows = []
    for effort in LARGE_EFFORTS:
        index.set_search_effort(effort)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            _, found = index.search(queries, K)
            timings.append(time.perf_counter() - started)
        batch = len(queries) / statistics.median(timings)
        single = one_at_a_time_rate(index.search, queries[:SINGLE_QUERIES])
        recall = np.mean([len(np.intersect1d(found[i], truth[i])) / K for i in range(len(subset))])
        default = " (default)" if effort == DEFAULT_SEARCH_EFFORT["nprobe"] else ""
        rows.append([f"nprobe {effort}{default}", f"{single / exact_single:.1f}x", f"{batch / exact_batch:.1f}x", f"{recall:.3f}",
                     f"{single:,.0f}", f"{batch:,.0f}"])
    return rows, {"exact_single": exact_single, "exact_batch": exact_batch, "build": build, "bytes": size / count}


def one_at_a_time_rate(search, queries: np.ndarray) -> float:
    """Queries/s searching ``queries`` one after another, each alone (median of 3 timings)."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        for query in queries:
            search(query[None], K)
        timings.append(time.perf_counter() - started)
    return len(queries) / statistics.median(timings)


# command line latency -----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started_server(collection: Path, env: dict) -> subprocess.Popen:
    """``cbir serve`` on ``collection``, once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "cbir.cli", "serve", "-c", str(collection), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cbir serve exited: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("cbir serve did not answer")


def cli_latency(paths: list[Path], query: Path) -> tuple[list[list[str]], float]:
    """Seconds for `cbir index` of ``paths`` and for fresh `cbir search` processes: through a running
    `cbir serve` and in-process (``--local``), alternating, median of ``LATENCY_ROUNDS``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))}
    env.pop("CBIR_TOKEN", None)
    with tempfile.TemporaryDirectory() as folder:
        collection = Path(folder) / "collection"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cbir.cli", "index", *map(str, paths), "-c", str(collection), "--json"],
                       check=True, capture_output=True, env=env)
        indexing = time.perf_counter() - started

        def timed(arguments: list[str]) -> float:
            started = time.perf_counter()
            completed = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=env)
            if completed.returncode != 0:
                raise RuntimeError(completed.stderr)
            return time.perf_counter() - started

        local = ["-m", "cbir.cli", "search", str(query), "-c", str(collection), "--json", "--local"]
        warm = local[:-1]
        first = timed(local)
        server = started_server(collection, env)
        try:
            served = subprocess.run([sys.executable, *warm], capture_output=True, text=True, env=env)
            if "answered by the cbir serve" not in served.stderr:
                raise RuntimeError(f"cbir search did not go through the server: {served.stderr}")
            times: dict[str, list[float]] = {"warm": [], "local": [], "libraries": [], "imports": [], "bare": []}
            for _ in range(LATENCY_ROUNDS):  # interleaved, so that a burst of other load hits all alike
                times["warm"].append(timed(warm))
                times["local"].append(timed(local))
                times["libraries"].append(timed(["-c", "import cbir.cli, cbir.encoders.encoder, cbir.collection.vector_index"]))
                times["imports"].append(timed(["-c", "import cbir.cli"]))
                times["bare"].append(timed(["-c", "pass"]))
        finally:
            server.terminate()
            server.wait(timeout=30)
        median = {name: statistics.median(values) for name, values in times.items()}
        hits = json.loads(subprocess.run([sys.executable, *local], capture_output=True, text=True, env=env).stdout)["results"]
    if json.loads(served.stdout)["results"] != hits:
        raise RuntimeError("cbir search gave other results through the server than in-process")
    rows = [
        ["`cbir search` in-process / through `cbir serve`", f"{median['local'] / median['warm']:.1f}x"],
        ["`cbir search` through a running `cbir serve`", f"{median['warm']:.2f}"],
        ["of which: Python start-up", f"{median['bare']:.2f}"],
        ["of which: importing the command line (no numpy, torch, timm or faiss)", f"{median['imports'] - median['bare']:.2f}"],
        ["of which: the request (decode, encode, search in the server) and output", f"{median['warm'] - median['imports']:.2f}"],
        ["first `cbir search --local` after indexing", f"{first:.2f}"],
        ["`cbir search --local` (in-process)", f"{median['local']:.2f}"],
        ["of which: importing the encoder and index modules (torch, timm, faiss ...)", f"{median['libraries'] - median['imports']:.2f}"],
        ["of which: model load, query encoding, search, output", f"{median['local'] - median['libraries']:.2f}"],
    ]
    if not hits or Path(hits[0]["uri"]).name != query.name:
        raise RuntimeError(f"the query {query.name} should find itself first; got {hits[:1]}")
    return rows, indexing


# report -----------------------------------------------------------------------
def decoding_place() -> str:
    workers = image_workers()
    return "in-process" if workers == 0 else f"in {workers} worker process{'es' if workers > 1 else ''}"



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="The shared benchmark data folder (needs corel1k).")
    parser.add_argument("--images", type=int, default=300, help="Corel photos per extraction run.")
    parser.add_argument("--large", type=int, default=16, help="12-megapixel JPEGs per extraction run.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds; their median is reported.")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000], help="Vector counts for search.")
    parser.add_argument("--large-count", type=int, default=LARGE_COUNT, help="Vectors for the large-collection index.")
    parser.add_argument("--exact-queries", type=int, default=200, help="Queries the exact baseline of the large section runs.")
    parser.add_argument("--thread-images", type=int, default=48, help="Corel photos per process in the threads section.")
    parser.add_argument("--peer-images", type=int, default=200, help="Corel photos each contender of the peers section indexes.")
    parser.add_argument("--precision-images", type=int, default=128, help="Corel photos each precision is timed on.")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="Measure these sections and replace them in --out, keeping the others.")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "cbir" / "bench", help="Where the 12 MP JPEGs are written.")
    parser.add_argument("--out", type=Path, default=RESULTS / "speed.md")
    args = parser.parse_args(argv)
    if not (args.data / "corel1k").is_dir():
        console.print(f"[red]{args.data / 'corel1k'} is missing: pass --data DIR with the shared benchmark data[/red]")
        return 2
    clock = RunClock()
    spec = EncoderSpec()
    corel = corel_sample(args.data, args.images)
    sections: dict[str, str] = {}
    if "extraction" in args.only:
        sections.update(extraction_sections(args, spec, corel))
    if "precision" in args.only:
        section_clock = RunClock()
        found = precision.measure(args.data, args.precision_images, max(args.rounds, 3))
        sections[PRECISION_HEADING] = precision_section(args, found, section_clock)
    if "search" in args.only:
        section_clock = RunClock()
        search_rows, search_notes = measure_search(args.sizes)
        sections[SEARCH_KEY] = search_section(search_rows, search_notes, section_clock)
    if "large" in args.only:
        section_clock = RunClock()
        rows, facts = measure_large(args.large_count, args.exact_queries)
        sections[LARGE_HEADING] = large_section(args, rows, facts, section_clock)
    if "latency" in args.only:
        section_clock = RunClock()
        console.print("command line latency")
        latency_rows, indexing = cli_latency(corel, corel[0])
        sections[LATENCY_HEADING] = latency_section(latency_rows, indexing, len(corel), section_clock)
    if "threads" in args.only:
        section_clock = RunClock()
        console.print("threads and wait policy")
        sections[THREADS_HEADING] = threads_section(args, threads.measure(args.data, args.thread_images, args.rounds), section_clock)
    if "peers" in args.only:
        section_clock = RunClock()
        console.print("a peer on the same network")
        seconds, weights = peers.measure(corel_sample(args.data, args.peer_images), args.rounds)
        sections[PEERS_HEADING] = peers_section(args, seconds, weights, section_clock)
    write(args, clock, sections)
    console.print(f"written to {args.out}")
    return 0


PRECISION_HEADING = "## Reduced precision"
SEARCH_HEADING = f"## Search ({DIM}-d synthetic vectors, {QUERIES} queries, k = {K})"
LARGE_HEADING = "## 1M vectors: the index for large collections"
LATENCY_HEADING = "## `cbir search` from the command line"
THREADS_HEADING = "## Threads and waiting"
PEERS_HEADING = "## A peer on the same network"
SEARCH_KEY = "## Search ("  # the search section whatever its dimension
ORDER = ("## Extraction", PRECISION_HEADING, SEARCH_KEY, LARGE_HEADING, LATENCY_HEADING, THREADS_HEADING, PEERS_HEADING)


def section_run(clock: RunClock) -> str:
    """The line a separately measured section starts with: its command, time and load average."""
    return f"Measured by `{command_line()}`; " + clock.summary().removeprefix("- ")


def extraction_sections(args, spec: EncoderSpec, corel: list[Path]) -> dict[str, str]:
    clock = RunClock()
    encoder, unfused = Encoder(spec).for_inference(), Encoder(spec)
    encoders = {"ceiling": encoder, "unfused": unfused}
    naives = {"naive": NaiveExtractor(spec), "naive uncropped": NaiveExtractor(spec, crop=False)}
    large = large_jpegs(corel_sample(args.data, args.large), args.work / "large_jpegs")
    extraction = {}
    for name, paths in (("Corel-1k photos (384x256 JPEG)", corel), ("12-megapixel JPEGs (4243x2829)", large)):
        console.print(f"extraction: {name}")
        extraction[name] = measure_extraction(encoders, naives, paths, args.rounds)
    console.print("extraction: decoding workers")
    decoding = decoding_sweep(encoder, dict(zip(extraction, (corel, large))), args.rounds)
    console.print("extraction: JPEG decoders")
    decoders = jpeg.compare(encoder, dict(zip(extraction, (corel, large))), args.rounds)
    console.print("extraction: batch sizes")
    swept = corel[:128]
    sweep = batch_size_sweep(encoder, unfused, swept, args.rounds)
    stages = stage_profile(encoder, corel[:64])
    profile = pipeline_profile(encoder, corel)
    rows = []
    for name, rates in extraction.items():
        rows.append([
            name, f"{100 * rates['pipeline'] / rates['ceiling']:.0f}%", f"{rates['pipeline'] / rates['naive']:.2f}x",
            f"{rates['pipeline'] / rates['naive uncropped']:.2f}x", f"{rates['pipeline']:.1f}", f"{rates['ceiling']:.1f}",
            f"{rates['unfused']:.1f}", f"{rates['naive']:.1f}", f"{rates['naive uncropped']:.1f}",
        ])
    lines = [
        f"## Extraction (images/s, median of {args.rounds} alternating rounds)",
        "",
        section_run(clock),
        "",
        f"Encoder {spec.backbone} + {spec.pooling}, short side {spec.image_size} px. "
        f"{args.images} Corel photos and {args.large} JPEGs upscaled from Corel photos to 12 megapixels.",
        "",
        "- *naive*: full PIL decode, torchvision Resize(224) + CenterCrop(224), one image per forward pass, NCHW float32, "
        "the network as trained. It crops to 224x224, so it runs the network on fewer pixels than the pipeline "
        "(224x336 for these photos); *naive uncropped* is the same without the crop: the pipeline's work per image.",
        "- *pipeline*: `cbir.pipelines.image.extract` (what `cbir index` and `cbir evaluate` run): files read, hashed, "
        f"decoded with JPEG draft scaling and resized ({decoding_place()}, the default on this machine), "
        f"batches of {DEFAULT_BATCH_SIZE}, channels-last.",
        "- *ceiling*: the pipeline's network on the same batches of ready-made tensors: the forward pass alone. "
        "The pipeline runs the network rewritten for inference (`cbir.encoders.fusion`: batch norms folded into the "
        "convolutions, SAME padding without copies; same descriptors); *unfused* is the forward pass alone of the "
        "network as trained.",
        "",
        markdown_table(["images", "pipeline / ceiling", "pipeline / naive", "pipeline / naive uncropped", "pipeline",
                        "ceiling", "unfused", "naive", "naive uncropped"], rows),
        "",
        "### Decoding",
        "",
        "The pipeline's images/s by decoding worker processes (0: decoded in the main process between batches). "
        "Workers only pay where cores are left over: the network's threads wait for each other after every operation, "
        "so a worker that takes one of their cores slows the whole forward pass. By default "
        "`cbir.pipelines.image.image_workers` starts one worker per core beyond the network's threads "
        f"({image_workers()} here).",
        "",
        markdown_table(["images", *(str(workers) for workers in DECODING_WORKERS)], decoding),
        "",
        *jpeg_lines(decoders, args.rounds),
        "### Batch size",
        "",
        f"The forward pass alone (images/s) on {len(swept)} ready Corel tensors (224x336) by images per batch. "
        f"The pipeline uses {DEFAULT_BATCH_SIZE} (`cbir.encoders.encoder.DEFAULT_BATCH_SIZE`).",
        "",
        markdown_table(["network, layout", *map(str, BATCH_SIZES)], sweep),
        "",
        "### Where the time goes",
        "",
        "Per image, each stage timed on its own in one process (64 Corel photos):",
        "",
        markdown_table(["stage", "ms / image", "share"], stages),
        "",
        f"Main-process profile of the pipeline (decoding {decoding_place()}):",
        "",
        "```",
        profile,
        "```",
    ]
    return {ORDER[0]: "\n".join(lines)}


def jpeg_lines(rows: list[list[str]], rounds: int) -> list[str]:
    """The JPEG decoders' table (``bench.speed.jpeg``), or a line saying simplejpeg was not installed."""
    if not rows:
        return ["JPEG decoders: simplejpeg is not installed (`pip install 'cbir[bench]'`), so it was not compared.", ""]
    return [
        "#### JPEG decoders",
        "",
        "Decode + resize per image, ms, median of "
        f"{rounds} alternating rounds (`bench.speed.jpeg`): Pillow with draft scaling as the pipeline runs it, against "
        "simplejpeg, which decodes with libjpeg-turbo's DCT scaling to the smallest size whose short side reaches the "
        "encoder's; the same resize follows both.",
        "",
        markdown_table(["images", "simplejpeg / Pillow (time)", "Pillow ms", "simplejpeg ms", "same pixels"], rows),
        "",
    ]


def precision_section(args, found: dict[str, dict], clock: RunClock) -> str:
    reference = found["fp32"]
    rounds = max(args.rounds, 3)

    def quality(name: str, key: str, digits: int = 1) -> str:
        if key not in found[name]:
            return "-"
        value, change = found[name][key], found[name][key] - reference[key]
        return f"{value:.{digits}f}" if name == "fp32" else f"{value:.{digits}f} ({change:+.{digits}f})"

    rows = [
        [name if name != "fp32" else "fp32 (default)", f"{values['pipeline'] / reference['pipeline']:.2f}x",
         f"{values['forward'] / reference['forward']:.2f}x", f"{values['pipeline']:.1f}", f"{values['forward']:.1f}",
         quality(name, "corel_map", 2), quality(name, "ukbench_ns", 3), quality(name, "ukbench_map", 2),
         f"{values['max_difference']:.2g}", f"{values['min_cosine']:.4f}"]
        for name, values in found.items()
    ]
    bf16 = "has" if reference["native_bf16"] else "lacks"
    return "\n".join([
        PRECISION_HEADING,
        "",
        section_run(clock),
        "",
        f"The default encoder at each precision `cbir index --precision` offers (`cbir.encoders.precision`), timed on "
        f"{args.precision_images} Corel photos in one process, the encoders taking turns, median of {rounds} rounds: the "
        "whole pipeline and the forward pass alone on ready tensors. *bf16*: the network rewritten for inference with "
        f"bfloat16 weights and activations (this CPU {bf16} native bfloat16: oneDNN's check, AVX512-BF16 or AMX). "
        "*int8*: exported to ONNX and statically quantised with onnxruntime (QDQ, per-channel int8 weights, uint8 "
        "activations), calibrated on 12 photos bundled with scikit-image. *fp32, onnxruntime*: the fp32 network run "
        "by onnxruntime instead of torch, not an option. Quality: every Corel-1k photo queries all others (mAP over "
        "the whole ranking), every UKBench image queries all 56 (N-S score out of 4, and mAP), each change against "
        "fp32 in brackets. Descriptor differences: against fp32 on the ready tensors of one shape, after L2 "
        "normalisation.",
        "",
        markdown_table(["precision", "pipeline vs fp32", "forward vs fp32", "pipeline images/s", "forward images/s",
                        "Corel-1k mAP", "UKBench N-S", "UKBench mAP", "max descriptor difference", "lowest cosine to fp32"], rows),
    ])


def search_section(search_rows: list[list[str]], search_notes: list[str], clock: RunClock) -> str:
    return "\n".join([
        SEARCH_HEADING,
        "",
        section_run(clock),
        "",
        "Vectors are unit vectors scattered around 2000 random centres (independent uniform vectors would be an "
        "unrealistically hard case for approximate indexes). Queries come from the same distribution and are not in "
        "the database. Recall@10 is the share of the exact top 10 (Flat) found; queries/s is for the 1000 queries "
        "searched as one batch (median of 3 timings), against exact search (Flat) on the same vectors; bytes per vector from the serialised index (ids included). Indexes are cbir's "
        "`VectorIndex` (FAISS `IndexIDMap2`, inner product). `Refine(SQ8)` keeps 8-bit scalar-quantised copies "
        f"of the vectors and re-scores {REFINE_K_FACTOR} candidates per result with them "
        "(`cbir.collection.vector_index.REFINE_K_FACTOR`).",
        "",
        markdown_table(["vectors", "index", "search effort", "queries/s vs exact", "recall@10", "build s", "bytes / vector",
                        "queries / s"], search_rows),
        *([""] + [f"- {note}" for note in search_notes] if search_notes else []),
    ])


def large_section(args, rows: list[list[str]], facts: dict, clock: RunClock) -> str:
    return "\n".join([
        LARGE_HEADING,
        "",
        section_run(clock),
        "",
        f"`{LARGE_COLLECTION_INDEX}` (`cbir.collection.vector_index.LARGE_COLLECTION_INDEX`, inverted lists over the exact "
        f"vectors) on {args.large_count:,} vectors of the distribution above, at each search effort, against exact search "
        "(Flat) in the same run, FAISS on its default threads, median of 3 timings each, in two regimes. *One at a time*: "
        f"each query searched alone, as `cbir search` and the server search ({SINGLE_QUERIES} queries; exact search "
        f"on {SINGLE_EXACT_QUERIES}, each of which scans every vector). *Batch*: the {QUERIES} queries in one call "
        f"(exact search on the first {args.exact_queries}), where exact search becomes one matrix product. Recall@10 "
        f"on the first {args.exact_queries} queries. The collection stores its effort and applies it to every search "
        f"(default nprobe {DEFAULT_SEARCH_EFFORT['nprobe']}). Exact search: {facts['exact_single']:,.1f} queries/s one "
        f"at a time, {facts['exact_batch']:,.1f} in a batch; the index took {facts['build']:.0f} s to train and fill, "
        f"{facts['bytes']:.0f} bytes per vector.",
        "",
        markdown_table(["search effort", "one at a time: vs exact", "batch: vs exact", "recall@10", "one at a time: queries/s",
                        "batch: queries/s"], rows),
    ])


def latency_section(rows: list[list[str]], indexing: float, indexed: int, clock: RunClock) -> str:
    return "\n".join([
        LATENCY_HEADING,
        "",
        section_run(clock),
        "",
        f"A collection of {indexed} Corel photos (built by `cbir index` in {indexing:.1f} s, "
        f"{indexed / indexing:.1f} images/s including start-up); one query image, k = 10, JSON output. "
        "Each search is a fresh process (operating-system file cache warm); with a `cbir serve` running for the "
        "collection, `cbir search` sends the query to it (same results, checked), `--local` searches in-process. "
        f"Median of {LATENCY_ROUNDS} alternating rounds, seconds (the first row: the ratio).",
        "",
        markdown_table(["step", "seconds"], rows),
    ])


def threads_section(args, found: dict[str, dict[str, float]], clock: RunClock) -> str:
    reference = found[threads.COMBINATIONS[0][0]]
    rows = [
        [label, f"{values['forward'] / reference['forward']:.2f}x", f"{values['pipeline'] / reference['pipeline']:.2f}x",
         f"{values['forward']:.1f}", f"{values['pipeline']:.1f}", f"{values['load_min']:.1f}-{values['load_max']:.1f}"]
        for label, values in found.items()
    ]
    return "\n".join([
        THREADS_HEADING,
        "",
        section_run(clock),
        "",
        f"Each combination of OpenMP thread count and wait policy in fresh processes (`bench.speed.threads`: OpenMP "
        f"reads them once, when torch loads it), taking turns, median of {args.rounds} rounds; {args.thread_images} Corel "
        "photos each: the forward pass alone on ready tensors and the whole pipeline (decoding workers as the default "
        "picks them). *library default wait*: `OMP_WAIT_POLICY` unset, GNU OpenMP's threads spin a while after each "
        "operation. cbir sets `OMP_WAIT_POLICY` to `PASSIVE` unless the environment sets it (`cbir.core.openmp`) and "
        "keeps torch's thread count (one per core).",
        "",
        markdown_table(["threads, wait policy", "forward vs first row", "pipeline vs first row", "forward images/s",
                        "pipeline images/s", "load average seen"], rows),
    ])


def peers_section(args, seconds: dict[str, float], weights: str, clock: RunClock) -> str:
    mine = seconds["cbir index (defaults)"]
    rows = [[name, f"{value / mine:.2f}x", f"{value:.1f}", f"{args.peer_images / value:.1f}"] for name, value in seconds.items()]
    return "\n".join([
        PEERS_HEADING,
        "",
        section_run(clock),
        "",
        f"{args.peer_images} Corel photos encoded with MobileNetV3-small (weights: {weights}, one file for both) by "
        "`cbir index --backbone torchvision/mobilenet_v3_small --weights FILE` into a new collection and by imagededup "
        "0.3.3's `CNN().encode_images` (`bench.speed.peers`): whole fresh processes, start-up and imports included, "
        f"taking turns, median of {args.rounds} rounds. cbir feeds the network whole photos (short side 224 px, "
        "224x336 here) and pools R-MAC; imagededup crops 224x224 and averages.",
        "",
        markdown_table(["contender", "time vs cbir", "seconds", "images/s"], rows),
    ])


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """A results file's head (before the first ``## ``) and its sections by their place in ``ORDER``."""
    parts = re.split(r"(?m)^(?=## )", text)

    def key(heading: str) -> str:
        return next((prefix for prefix in ORDER if heading.startswith(prefix)), heading)

    return parts[0].rstrip(), {key(part.split("\n", 1)[0]): part.rstrip() for part in parts[1:]}


def write(args, clock: RunClock, sections: dict[str, str]) -> None:
    """The results file: with ``--only``, the sections measured now replace theirs and the others stay."""
    head, kept = "\n".join(["# Speed", "", f"Command: `{command_line()}`", "", *machine_description(), clock.summary()]), {}
    if set(args.only) != set(SECTIONS) and args.out.is_file():
        head, kept = split_sections(args.out.read_text())
        if SEPARATE_NOTE not in head:
            head += "\n\n" + SEPARATE_NOTE
    blocks = {**kept, **sections}
    ordered = [blocks[name] for name in ORDER if name in blocks] + [text for name, text in blocks.items() if name not in ORDER]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(head + "\n\n" + "\n\n".join(ordered) + "\n")


SEPARATE_NOTE = "Sections that name their own command were measured separately, with `--only`, at the time and load they give."


if __name__ == "__main__":
    sys.exit(main())

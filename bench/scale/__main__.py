"""Past one machine: FAISS HNSW against Milvus Lite on synthetic vectors (build time, queries/s, recall@10
against exact search, bytes per vector), and extraction on a local Ray against the local pipeline.

    nice -n 10 python -m bench.scale [--sizes 100000 1000000] [--images 200] [--data DIR]

Writes ``bench/results/scale.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, command_line, default_data, machine_summary
from bench.vectors import clustered_vectors
from cbir.progress import console

DIM = 512
QUERIES = 1000
QUERY_BATCH = 100
K = 10
EFFORT = 64


def folder_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(found[i], truth[i])) / K for i in range(len(truth))]))


def timed_search(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Queries/s over ``QUERY_BATCH``-query calls (the better of two rounds), and the ids found."""
    best, found = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        found = np.concatenate([search(queries[start : start + QUERY_BATCH]) for start in range(0, len(queries), QUERY_BATCH)])
        best = min(best, time.perf_counter() - started)
    return len(queries) / best, found


def measure_faiss(database: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path) -> dict:
    from cbir.collection.vector_index import VectorIndex

    started = time.perf_counter()
    index = VectorIndex("HNSW32", DIM)
    index.add(np.arange(1, len(database) + 1), database)
    index.train_if_possible()
    build = time.perf_counter() - started
    index.set_search_effort(EFFORT)
    index.save(folder / "index.faiss")
    qps, found = timed_search(lambda batch: index.search(batch, K)[1], queries)
    return {"store": "FAISS `HNSW32`", "build_s": build, "qps": qps, "recall": recall(found - 1, truth), "bytes": folder_bytes(folder / "index.faiss") / len(database)}


def measure_milvus_lite(database: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path) -> dict:
    from cbir.collection import milvus_store
    from cbir.core.items import Item

    def rows(ids: list[int]) -> dict[int, Item]:
        return {i: Item("image", f"/synthetic/{i:08d}.jpg", np.empty(0), metadata={"width": 640, "height": 480}) for i in ids}

    store = milvus_store.open_store("milvus-lite", folder, "image", "HNSW32", DIM, {"collection": "bench"}, rows)
    started = time.perf_counter()
    for start in range(0, len(database), 10_000):
        store.add(np.arange(start + 1, min(start + 10_000, len(database)) + 1), database[start : start + 10_000])
    store.client.flush(store.name)
    while store.client.describe_index(store.name, "vector")["indexed_rows"] < len(database):
        time.sleep(0.5)
    build = time.perf_counter() - started
    store.set_search_effort(EFFORT)
    qps, found = timed_search(lambda batch: store.search(batch, K)[1], queries)
    store.close()  # its files are complete once the embedded server has stopped
    return {"store": "Milvus Lite `HNSW` (M 32)", "build_s": build, "qps": qps, "recall": recall(found - 1, truth), "bytes": folder_bytes(folder / milvus_store.LITE_FILE) / len(database)}


def measure_search(sizes: list[int]) -> list[list[str]]:
    import faiss

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered_vectors(QUERIES, centres, rng)
    rows = []
    for count in sizes:
        console.print(f"search: {count:,} vectors")
        database = clustered_vectors(count, centres, rng)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(database)
        truth = exact.search(queries, K)[1]
        del exact
        for measure in (measure_faiss, measure_milvus_lite):
            with tempfile.TemporaryDirectory() as folder:
                result = measure(database, queries, truth, Path(folder))
            console.print(f"  {result}")
            rows.append([f"{count:,}", result["store"], f"{result['build_s']:.1f}", f"{result['qps']:,.0f}", f"{result['recall']:.3f}", f"{result['bytes']:,.0f}"])
    return rows


def extraction_images(data: Path, count: int, folder: Path) -> Path:
    """``count`` Corel photos copied into ``folder`` (generated pictures when the data is absent)."""
    images = folder / "images"
    images.mkdir()
    corel = sorted((data / "corel1k").rglob("*.jpg"))[:count]
    if corel:
        for path in corel:
            shutil.copy(path, images / path.name)
    else:
        from tests.conftest import write_images

        write_images(images, count, size=(384, 256))
    return images


def measure_extraction(data: Path, count: int) -> tuple[list[list[str]], str]:
    """Images/s of ``Collection.add`` locally and with Ray (2 encoder actors), Ray's start-up counted and not."""
    import ray
    import torch

    from cbir.collection.collection import Collection
    from cbir.pipelines.distributed import LOCAL, RayPipeline, _connect

    with tempfile.TemporaryDirectory() as folder:
        images = extraction_images(data, count, Path(folder))
        found = len(list(images.iterdir()))
        local_s = {}
        for threads in (torch.get_num_threads(), 1):
            torch.set_num_threads(threads)
            with Collection.create(Path(folder) / f"local-{threads}") as local:
                local.pipeline().encoder  # the network loads before the clock starts
                started = time.perf_counter()
                local.add([images])
                local_s[threads] = time.perf_counter() - started
        torch.set_num_threads(max(local_s))
        started = time.perf_counter()
        _connect(LOCAL)
        startup_s = time.perf_counter() - started
        try:
            with Collection.create(Path(folder) / "ray") as distributed:
                started = time.perf_counter()
                distributed.add([images], RayPipeline(distributed.pipeline(), LOCAL, actors=2))
                ray_s = time.perf_counter() - started
        finally:
            ray.shutdown()
    default = local_s[max(local_s)]
    rows = [
        [f"local pipeline (`cbir index`), {max(local_s)} torch threads", f"{found / default:.1f}", f"{default:.1f}", "1.00"],
        ["local pipeline, 1 torch thread", f"{found / local_s[1]:.1f}", f"{local_s[1]:.1f}", f"{local_s[1] / default:.2f}"],
        ["Ray Data, 2 encoder actors of 1 thread, after start-up", f"{found / ray_s:.1f}", f"{ray_s:.1f}", f"{ray_s / default:.2f}"],
        ["Ray Data, start-up of a local Ray counted", f"{found / (ray_s + startup_s):.1f}", f"{ray_s + startup_s:.1f}", f"{(ray_s + startup_s) / default:.2f}"],
    ]
    source = "Corel-1k photos" if (data / "corel1k").is_dir() else "generated 384x256 pictures"
    return rows, f"{found} {source}"


def kept_section(heading: str) -> list[str]:
    """The lines of a section of the existing results file (from ``heading`` to the next section), with a note
    that they come from an earlier run."""
    previous = (RESULTS / "scale.md").read_text().splitlines() if (RESULTS / "scale.md").is_file() else []
    start = next((i for i, line in enumerate(previous) if line.startswith(heading)), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(previous)) if previous[i].startswith("## ")), len(previous))
    earlier = [line for line in previous[:6] if line.startswith(("Command:", "Load average"))]
    return ["", previous[start] + " (kept from an earlier run)", "", *(f"Earlier run: {line}" for line in earlier), *previous[start + 1 : end]]


def load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--images", type=int, default=200, help="Images for the extraction comparison (0: skip it).")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--parts", nargs="+", choices=["search", "extraction"], default=["search", "extraction"],
                        help="What to measure; the other part's section of the results file is kept.")
    args = parser.parse_args(argv)
    load_before = load()
    started = time.time()
    search_rows = measure_search(args.sizes) if "search" in args.parts else []
    load_middle = load()
    extraction_rows, extraction_set = measure_extraction(args.data, args.images) if "extraction" in args.parts else ([], "")
    lines = [
        "# Scale: FAISS against Milvus Lite, local extraction against Ray",
        "",
        f"Command: `{command_line()}` (run with `nice -n 10`), {time.strftime('%Y-%m-%d', time.gmtime(started))}, "
        f"{(time.time() - started) / 60:.0f} min.",
        f"Machine: {machine_summary(('faiss-cpu', 'pymilvus', 'milvus-lite', 'ray'))}.",
        f"Load average (1, 5, 15 min) at the start {load_before}, between the parts {load_middle}, at the end {load()}: "
        "other work shared the cores, so rates are lower bounds.",
        "",
        f"## Search ({DIM}-d synthetic clustered unit vectors, {QUERIES} queries in calls of {QUERY_BATCH}, k = {K}, "
        f"search effort {EFFORT})",
        "",
        "Build: adding every vector until the index is searchable (Milvus Lite: inserts through pymilvus, "
        "flush, and its segment indexes built). Bytes per vector: the FAISS file, or the whole Milvus Lite "
        "folder (vectors, the fields a result needs, write-ahead log, indexes). Recall@10 against exact search.",
        "",
        "| vectors | store | build (s) | queries/s | recall@10 | bytes/vector |",
        "| --- | --- | --- | --- | --- | --- |",
        *["| " + " | ".join(row) + " |" for row in search_rows],
    ]
    if not search_rows:
        lines = lines[:5] + kept_section("## Search")[:-1]
    if extraction_rows:
        lines += [
            "",
            f"## Extraction ({extraction_set}, default encoder, 2 cores)",
            "",
            "Whole `Collection.add` runs on the same files into new collections; the network is loaded before the clock starts.",
            "",
            "| path | images/s | seconds | time / local |",
            "| --- | --- | --- | --- |",
            *["| " + " | ".join(row) + " |" for row in extraction_rows],
        ]
    else:
        lines += [""] + kept_section("## Extraction")
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n")
    console.print(f"written {RESULTS / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

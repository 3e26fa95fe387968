"""FAISS against Milvus Lite on synthetic descriptors: build time, queries/s, recall@10 against exact search,
bytes per vector and peak memory, one store at a time.

The vectors, the queries and the exact top 10 are written once under a work folder and reused by later runs;
each store is measured in its own process (so its peak memory is its own) and its result is kept there as
JSON, so a rerun measures only what is missing. A Milvus Lite build stops at a time or memory budget; the row
then holds what it built, searched against the exact top 10 of that part.

    python -m bench.scale.search WORK COUNT DIM STORE QUERIES BUDGET_S MEMORY_GB   (one store, as the runner calls it)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.vectors import clustered_vectors
from cbir.collection.vector_index import DEFAULT_SEARCH_EFFORT
from cbir.progress import console

QUERIES = 1000
QUERY_BATCH = 100
K = 10
CHUNK = 100_000  # vectors read, generated and searched exhaustively at a time
MILVUS_CHUNK = 10_000  # vectors per pymilvus insert call (the store batches them by 1000)
STORES = {
    "faiss-hnsw": ("FAISS `HNSW32`", "HNSW32", "efSearch"),
    "faiss-ivf": ("FAISS `IVF1024,Flat`", "IVF1024,Flat", "nprobe"),
    "milvus-hnsw": ("Milvus Lite `HNSW` (M 32)", "HNSW32", "efSearch"),
    "milvus-ivf": ("Milvus Lite `IVF_FLAT` (nlist 1024)", "IVF1024,Flat", "nprobe"),
}


# data, written once -----------------------------------------------------------------------------------------
def vectors_file(work: Path, count: int, dim: int) -> Path:
    """``count`` clustered unit vectors of ``dim`` float32 values, raw, generated chunk by chunk when missing."""
    path = work / f"vectors-{dim}d-{count}.f32"
    if not path.is_file():
        rng = np.random.default_rng([count, dim])
        with open(path.with_suffix(".part"), "wb") as out:
            for start in range(0, count, CHUNK):
                clustered_vectors(min(CHUNK, count - start), centres(dim), rng).tofile(out)
        path.with_suffix(".part").rename(path)
    return path


def centres(dim: int) -> np.ndarray:
    rng = np.random.default_rng([2000, dim])
    points = rng.standard_normal((2000, dim), dtype=np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def queries(dim: int) -> np.ndarray:
    """The same ``QUERIES`` queries for every size: from the database's distribution, not in it."""
    return clustered_vectors(QUERIES, centres(dim), np.random.default_rng([QUERIES, dim, 1]))


def read_rows(path: Path, dim: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a raw vector file, read (not mapped, so they count in memory only while held)."""
    with open(path, "rb") as handle:
        handle.seek(start * dim * 4)
        return np.fromfile(handle, dtype=np.float32, count=(stop - start) * dim).reshape(-1, dim)


def exact_top(path: Path, dim: int, count: int, query_vectors: np.ndarray) -> np.ndarray:
    """Row numbers of the exact top ``K`` by inner product among the first ``count`` rows, chunk by chunk."""
    best_scores = np.full((len(query_vectors), K), -np.inf, dtype=np.float32)
    best_rows = np.full((len(query_vectors), K), -1, dtype=np.int64)
    for start in range(0, count, CHUNK):
        scores = query_vectors @ read_rows(path, dim, start, min(start + CHUNK, count)).T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        best_scores, best_rows = np.take_along_axis(scores, keep, axis=1), np.take_along_axis(rows, keep, axis=1)
    return best_rows


def truth_file(work: Path, path: Path, dim: int, count: int) -> np.ndarray:
    cached = work / f"truth-{dim}d-{count}-{QUERIES}q.npy"
    if not cached.is_file():
        np.save(cached, exact_top(path, dim, count, queries(dim)))
    return np.load(cached)


# measuring ----------------------------------------------------------------------------------------------------
def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(found[i], truth[i])) / K for i in range(len(truth))]))


def timed_search(search, query_vectors: np.ndarray) -> tuple[float, np.ndarray]:
    """Queries/s over ``QUERY_BATCH``-query calls (the better of two rounds, one when a round takes over a
    minute), and the ids found."""
    best, found = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        found = np.concatenate([search(query_vectors[s : s + QUERY_BATCH]) for s in range(0, len(query_vectors), QUERY_BATCH)])
        best = min(best, time.perf_counter() - started)
        if best > 60:
            break
    return len(query_vectors) / best, found


def peak_memory_gb() -> float:
    """This process's resident peak (``VmHWM``: unlike ``ru_maxrss``, not carried over from the parent it was forked from)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024 / 1e9


def resident_gb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 1e9


def folder_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size


def measure_faiss(path: Path, dim: int, count: int, factory: str, effort_name: str, folder: Path) -> dict:
    """Build a ``VectorIndex`` chunk by chunk (an IVF index trained first on the first ``CHUNK`` vectors: the
    rows are in random order, so they are a random sample), save it and search it."""
    from cbir.collection.vector_index import VectorIndex

    started = time.perf_counter()
    index = VectorIndex(factory, dim)
    if not index.is_trained:
        index.index.train(read_rows(path, dim, 0, min(CHUNK, count)))
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        index.add(np.arange(start + 1, stop + 1), read_rows(path, dim, start, stop))
    build = time.perf_counter() - started
    index.set_search_effort(DEFAULT_SEARCH_EFFORT[effort_name])
    index.save(folder / "index.faiss")
    qps, found = timed_search(lambda batch: index.search(batch, K)[1], queries(dim))
    return {"built": count, "build_s": build, "qps": qps, "found": found - 1, "bytes": folder_bytes(folder / "index.faiss") / count}


def measure_milvus(path: Path, dim: int, count: int, factory: str, effort_name: str, folder: Path, searched: int, budget_s: float, memory_gb: float) -> dict:
    """Insert through ``MilvusStore`` until done or past ``budget_s`` or ``memory_gb`` resident, wait for its
    segment indexes, open it again (its saved indexes loaded) and search it."""
    from cbir.collection import milvus_store
    from cbir.core.items import Item

    def rows(ids: list[int]) -> dict[int, Item]:
        return {i: Item("image", f"/synthetic/{i:08d}.jpg", np.empty(0), metadata={"width": 640, "height": 480}) for i in ids}

    store = milvus_store.open_store("milvus-lite", folder, "image", factory, dim, {"collection": "bench"}, rows)
    started, built, stopped = time.perf_counter(), 0, None
    while built < count:
        stop = min(built + MILVUS_CHUNK, count)
        store.add(np.arange(built + 1, stop + 1), read_rows(path, dim, built, stop))
        built = stop
        if built < count and time.perf_counter() - started > budget_s:
            stopped = f"time budget {budget_s:.0f} s"
        elif built < count and resident_gb() > memory_gb:
            stopped = f"memory budget {memory_gb:g} GB"
        if stopped:
            break
        if built % CHUNK == 0:
            console.print(f"    {built:,} inserted, {time.perf_counter() - started:.0f} s, {resident_gb():.1f} GB resident")
    inserted_s = time.perf_counter() - started
    store.client.flush(store.name)
    # Milvus Lite compacts segments and builds their indexes in the background (its describe_index counts every row
    # as indexed at once, and a segment without its index is searched exhaustively); closing waits for that work.
    store.close()
    build = time.perf_counter() - started
    store = milvus_store.open_store("milvus-lite", folder, "image", factory, dim, {"collection": "bench"}, rows)
    store.set_search_effort(DEFAULT_SEARCH_EFFORT[effort_name])
    qps, found = timed_search(lambda batch: store.search(batch, K)[1], queries(dim)[:searched])
    store.close()  # its files are complete once the embedded server has stopped
    return {
        "built": built, "build_s": build, "insert_s": inserted_s, "index_s": build - inserted_s, "stopped": stopped, "qps": qps, "found": found - 1,
        "bytes": folder_bytes(folder / milvus_store.LITE_FILE) / built,
    }


def measure(work: Path, count: int, dim: int, store: str, searched: int, budget_s: float, memory_gb: float) -> dict:
    """One store's row (the worker's side)."""
    path = vectors_file(work, count, dim)
    _, factory, effort_name = STORES[store]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=work) as folder:
        if store.startswith("faiss"):
            result = measure_faiss(path, dim, count, factory, effort_name, Path(folder))
        else:
            result = measure_milvus(path, dim, count, factory, effort_name, Path(folder), searched, budget_s, memory_gb)
    found = result.pop("found")
    truth = truth_file(work, path, dim, count) if result["built"] == count else exact_top(path, dim, result["built"], queries(dim))
    return result | {
        "store": store, "vectors": count, "dim": dim, "queries": len(found), "effort": f"{effort_name} {DEFAULT_SEARCH_EFFORT[effort_name]}",
        "recall": recall(found, truth[: len(found)]), "peak_gb": peak_memory_gb(), "measured": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load": f"{load_start:.1f} to {os.getloadavg()[0]:.1f}",
    }


def result_file(work: Path, count: int, dim: int, store: str) -> Path:
    return work / f"result-{dim}d-{count}-{store}.json"


def run(work: Path, count: int, dim: int, store: str, searched: int, budget_s: float, memory_gb: float) -> dict:
    """One store's row: the kept one, or measured now in a process of its own and kept."""
    kept = result_file(work, count, dim, store)
    if kept.is_file():
        console.print(f"  {store} at {count:,}: kept from {json.loads(kept.read_text())['measured']}")
        return json.loads(kept.read_text())
    console.print(f"  {store} at {count:,}: measuring")
    subprocess.run([sys.executable, "-m", "bench.scale.search", str(work), str(count), str(dim), store, str(searched), str(budget_s), str(memory_gb)], check=True)
    return json.loads(kept.read_text())


def prepare(work: Path, count: int, dim: int) -> None:
    """The vectors and the exact top 10 of ``count``, made now unless kept."""
    started = time.perf_counter()
    truth_file(work, vectors_file(work, count, dim), dim, count)
    console.print(f"search: {count:,} {dim}-d vectors and their exact top {K} ready ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    work_dir, size, dimension, name, searched_queries, budget, memory = sys.argv[1:8]
    row = measure(Path(work_dir), int(size), int(dimension), name, int(searched_queries), float(budget), float(memory))
    result_file(Path(work_dir), int(size), int(dimension), name).write_text(json.dumps(row))
    console.print(f"  {row}")

"""Past one machine: FAISS against Milvus Lite on synthetic descriptors (build time, queries/s, recall@10
against exact search, bytes per vector, peak memory; ``bench.scale.search``), and extraction on a local Ray
against the local pipeline.

    nice -n 10 python -m bench.scale [--sizes 100000 1000000] [--dim 1280] [--stores ...] [--milvus-max N] [--work DIR]
                                     [--parts search extraction] [--images 200] [--data DIR]

Writes ``bench/results/scale.md`` after every row; the vectors, exact top 10s and finished rows stay under
``--work`` (not in the repository), so a rerun measures only what is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, command_line, default_data, machine_summary
from bench.scale import search
from cbir.progress import console

WORK = Path(tempfile.gettempdir()) / "cbir-bench-scale"
KEPT = " (kept from an earlier run)"

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
    if previous[start].endswith(KEPT):
        return ["", *previous[start:end]]
    earlier = [line for line in previous[:6] if line.startswith(("Command:", "Load average"))]
    return ["", previous[start] + KEPT, "", *(f"Earlier run: {line}" for line in earlier), *previous[start + 1 : end]]


def load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def search_row(row: dict) -> list[str]:
    vectors = f"{row['vectors']:,}" if row["built"] == row["vectors"] else f"{row['built']:,} of {row['vectors']:,} (stopped: {row['stopped']})"
    return [
        vectors, search.STORES[row["store"]][0], f"`{row['effort']}`", f"{row['build_s']:,.1f}", f"{row['qps']:,.0f}", str(row["queries"]),
        f"{row['recall']:.3f}", f"{row['bytes']:,.0f}", f"{row['peak_gb']:.1f}", row["load"],
    ]


def row_order(row: dict) -> tuple[int, int]:
    return row["vectors"], list(search.STORES).index(row["store"])


def extrapolations(rows: list[dict]) -> list[str]:
    """A line per row with a note kept beside it, and per stopped Milvus Lite build: its measured rates carried to
    the full size (arithmetic, not measured)."""
    lines = []
    for row in sorted(rows, key=row_order):
        if row.get("note"):
            lines.append(f"- {search.STORES[row['store']][0]} at {row['vectors']:,}: {row['note']}")
        if row["built"] < row["vectors"]:
            scale = row["vectors"] / row["built"]
            lines.append(
                f"- {search.STORES[row['store']][0]} at {row['vectors']:,}: stopped after {row['built']:,} vectors "
                f"({row['stopped']}): {row['insert_s']:,.0f} s of inserts ({row['built'] / row['insert_s']:,.0f} vectors/s), "
                f"{row['build_s']:,.0f} s until indexed, {row['peak_gb']:.1f} GB peak. Extrapolated linearly (not measured): "
                f"about {row['build_s'] * scale / 60:,.0f} min to build and {row['peak_gb'] * scale:.0f} GB of memory for {row['vectors']:,}."
            )
    return lines


def extrapolated_rows(args: argparse.Namespace, rows: list[dict]) -> tuple[list[str], list[str]]:
    """Table rows and notes for the Milvus Lite stores at sizes past ``--milvus-max``: the largest measured row of the
    same store, scaled by the ratio of sizes (arithmetic, not measured)."""
    table, notes = [], []
    for count in sorted(args.sizes):
        for store in args.stores:
            if not store.startswith("milvus") or args.milvus_max is None or count <= args.milvus_max:
                continue
            base = max((row for row in rows if row["store"] == store and row["built"] == row["vectors"]), key=lambda row: row["vectors"], default=None)
            if base is None:
                continue
            factor = count / base["vectors"]
            table.append(
                f"| {count:,} | {search.STORES[store][0]} | `{base['effort']}` | about {base['build_s'] * factor:,.0f} (extrapolated) "
                f"| about {base['qps'] / factor:,.1f} (extrapolated) | | not extrapolated | about {base['bytes']:,.0f} (as at {base['vectors']:,}) "
                f"| about {base['peak_gb'] * factor:.0f} (extrapolated) | |"
            )
            notes.append(
                f"- {search.STORES[store][0]} at {count:,}: not measured (Milvus Lite is measured up to {args.milvus_max:,} vectors); "
                f"the row is the {base['vectors']:,} row scaled by {factor:g}. Milvus Lite keeps segments of at most 100,000 rows "
                "(`milvus_lite.constants.MAX_SEGMENT_ROWS`), builds each one's index like the measured row's, holds them in the "
                "process's memory and searches them one after another, so build time and memory grow with the number of "
                f"segments and queries/s falls with it. Of the {base['build_s']:,.0f} s measured, {base['insert_s']:,.0f} s were "
                f"inserts ({base['vectors'] / base['insert_s']:,.0f} vectors/s through pymilvus) and {base['index_s']:,.0f} s "
                "compaction and indexing after them."
            )
    return table, notes


def search_section(args: argparse.Namespace, rows: list[dict], pending: list[str]) -> list[str]:
    extrapolated, notes = extrapolated_rows(args, rows)
    return [
        f"## Search ({args.dim}-d synthetic clustered unit vectors, k = {search.K}, the stores' default search effort)",
        "",
        f"Vectors: unit vectors around 2000 random centres (`bench.vectors`), {args.dim}-d float32 like the default encoder's "
        f"descriptors. Queries: {search.QUERIES} from the same distribution, not in the database, searched in calls of "
        f"{search.QUERY_BATCH} (Milvus Lite: the first {args.milvus_queries}); queries/s is the better of two rounds (one when "
        "a round takes over a minute). Recall@10 against exact search over the same vectors. Build: adding every vector "
        "until the index is searchable (FAISS IVF: training on 100,000 of them included; Milvus Lite: inserts through "
        "pymilvus, flush, and its segment indexes built). Bytes per vector: the FAISS file, or the whole Milvus Lite folder "
        "(vectors, the fields a result needs, write-ahead log, indexes). Peak memory: the resident peak of the process that "
        f"built and searched the store (Milvus Lite runs inside it); load: the 1-minute load average when it started and ended (each row is measured in a "
        f"process of its own, some in earlier runs of the command, kept under its work folder). A Milvus Lite build stops past {args.milvus_budget:,.0f} s "
        f"or {args.memory_gb:g} GB resident and is then searched as far as it got.",
        "",
        f"Rows finished between {min(row['measured'] for row in rows)} and {max(row['measured'] for row in rows)} UTC.",
        "",
        "| vectors | store | search effort | build (s) | queries/s | queries | recall@10 | bytes/vector | peak memory (GB) | load (1 min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *["| " + " | ".join(search_row(row)) + " |" for row in sorted(rows, key=row_order)],
        *[f"| {name} | not measured: the run stopped before it | | | | | | | | |" for name in pending],
        *extrapolated,
        *(["", *extrapolations(rows), *notes] if extrapolations(rows) or notes else []),
    ]


def write(args: argparse.Namespace, started: float, loads: list[str], search_lines: list[str], extraction_lines: list[str]) -> None:
    lines = [
        "# Scale: FAISS against Milvus Lite, local extraction against Ray",
        "",
        f"Command: `{command_line()}` (run with `nice -n 10`), {time.strftime('%Y-%m-%d', time.gmtime(started))}, "
        f"{(time.time() - started) / 60:.0f} min.",
        f"Machine: {machine_summary(('faiss-cpu', 'pymilvus', 'milvus-lite', 'ray'))}.",
        f"Load average (1, 5, 15 min) {'; '.join(loads)}: other work shared the cores, so rates are lower bounds.",
        "",
        *search_lines,
        "",
        *extraction_lines,
    ]
    (RESULTS / "scale.md").write_text("\n".join(lines).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=1280, help="Vector dimension (the default encoder's: 1280).")
    parser.add_argument("--stores", nargs="+", choices=list(search.STORES), default=list(search.STORES))
    parser.add_argument("--work", type=Path, default=WORK, help="Where vectors, exact top 10s and finished rows are kept.")
    parser.add_argument("--milvus-queries", type=int, default=300, help="Queries searched on Milvus Lite (of the 1000).")
    parser.add_argument("--milvus-budget", type=float, default=1800, help="Seconds of Milvus Lite inserts before it stops.")
    parser.add_argument("--milvus-max", type=int, help="Measure Milvus Lite up to this many vectors; larger sizes get rows "
                        "extrapolated from the largest measured one, marked as such.")
    parser.add_argument("--memory-gb", type=float, default=8, help="Resident memory past which a Milvus Lite build stops.")
    parser.add_argument("--images", type=int, default=200, help="Images for the extraction comparison (0: skip it).")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--parts", nargs="+", choices=["search", "extraction"], default=["search", "extraction"],
                        help="What to measure; the other part's section of the results file is kept.")
    args = parser.parse_args(argv)
    started = time.time()
    loads = [f"at the start {load()}"]
    extraction_lines = kept_section("## Extraction")[1:]
    search_lines = kept_section("## Search")[1:]
    if "search" in args.parts:
        args.work.mkdir(parents=True, exist_ok=True)
        planned = [
            (count, store) for count in args.sizes for store in args.stores
            if not store.startswith("milvus") or args.milvus_max is None or count <= args.milvus_max
        ]
        rows: list[dict] = []
        for number, (count, store) in enumerate(planned):
            if number == 0 or count != planned[number - 1][0]:
                search.prepare(args.work, count, args.dim)
            rows.append(search.run(args.work, count, args.dim, store, args.milvus_queries, args.milvus_budget, args.memory_gb))
            pending = [f"{c:,} {search.STORES[s][0]}" for c, s in planned[number + 1 :]]
            search_lines = search_section(args, rows, pending)
            write(args, started, loads + [f"now {load()}"], search_lines, extraction_lines)
        loads.append(f"after the search part {load()}")
    if "extraction" in args.parts:
        extraction_rows, extraction_set = measure_extraction(args.data, args.images)
        extraction_lines = [
            f"## Extraction ({extraction_set}, default encoder, 2 cores)",
            "",
            "Whole `Collection.add` runs on the same files into new collections; the network is loaded before the clock starts.",
            "",
            "| path | images/s | seconds | time / local |",
            "| --- | --- | --- | --- |",
            *["| " + " | ".join(row) + " |" for row in extraction_rows],
        ]
    loads.append(f"at the end {load()}")
    write(args, started, loads, search_lines, extraction_lines)
    console.print(f"written {RESULTS / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

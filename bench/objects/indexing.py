"""Indexing speed through a collection on voc_dev: the same photos indexed whole and with their objects
(``cbir index`` and ``cbir index --objects``) in one run, photos/s and their ratio; then the grid of an
object query (``cbir search IMAGE --objects --match all --grid``) for docs/objects.md.
Writes the "Indexing through a collection" section of bench/results/objects.md and
docs/images/objects-search.png.

    nice -n 10 python -m bench.objects.indexing [--data DIR] [--photos 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPOSITORY, RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from cbir.collection.collection import Collection
from cbir.detectors import DetectionSettings, load_detector
from cbir.encoders.encoder import EncoderSpec, shared_encoder
from cbir.pipelines.image import ImagePipeline
from cbir.pipelines.objects import ObjectPipeline
from cbir.progress import console, progress_bar

PICTURE = REPOSITORY / "docs" / "images" / "objects-search.png"
SECTION = "## Indexing through a collection"


def photo_classes(voc: Path) -> dict[str, set[str]]:
    """File name -> the classes of its non-difficult objects, in objects.csv order."""
    classes: dict[str, set[str]] = {}
    with open(voc / "objects.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found = classes.setdefault(row["filename"], set())
            if str(row.get("difficult") or "0").strip() in ("0", ""):
                found.add(row["class_name"])
    return classes


def index_once(pipeline, photos: list[Path], folder: Path) -> dict:
    """Index ``photos`` into a new collection with ``pipeline``: seconds, photos/s, items by kind, load average."""
    load_before = os.getloadavg()[0]
    with Collection.create(folder, pipeline=pipeline) as store:
        with progress_bar(f"indexing ({pipeline.kind})") as update:
            report = store.add(photos, pipeline=pipeline, progress=update)
        kinds = store.catalog.counts_by_kind()
    return {"seconds": report.seconds, "rate": len(photos) / report.seconds, "kinds": kinds, "load": (load_before, os.getloadavg()[0])}


def write_section(path: Path, text: str) -> None:
    """Put ``text`` (a section starting with ``SECTION``) in the results file, replacing an earlier one."""
    old = path.read_text(encoding="utf-8") if path.is_file() else "# Object-level retrieval (voc_dev)\n"
    if SECTION in old:
        start = old.index(SECTION)
        following = old.find("\n## ", start + len(SECTION))
        old = old[:start].rstrip("\n") + ("\n\n" + old[following + 1 :] if following >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--photos", type=int, default=100, help="index the first N photos of objects.csv")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: theirs); 1 on a crowded machine")
    parser.add_argument("--query-classes", default="person,horse", help="the picture's query: the first later photo holding these classes")
    parser.add_argument("--out", type=Path, default=RESULTS / "objects.md")
    parser.add_argument("--picture", type=Path, default=PICTURE)
    args = parser.parse_args(argv)
    voc = args.data / "voc_dev"
    if not (voc / "objects.csv").is_file():
        sys.exit(f"{voc} is missing: this benchmark needs the shared voc_dev data (--data DIR)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    clock = RunClock()
    classes = photo_classes(voc)
    names = list(classes)
    photos = [voc / "JPEGImages" / name for name in names[: args.photos]]
    wanted = set(args.query_classes.split(","))
    query = next(voc / "JPEGImages" / name for name in names[args.photos :] if wanted <= classes[name])
    encoder = shared_encoder(EncoderSpec())
    settings = DetectionSettings()
    detector = load_detector(settings=settings, threads=args.threads)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="cbir-bench-indexing-") as work:
        runs["whole images"] = index_once(ImagePipeline(encoder), photos, Path(work) / "images")
        runs["with --objects"] = index_once(ObjectPipeline(encoder, detector), photos, Path(work) / "objects")
        command = [
            sys.executable, "-m", "cbir.cli", "search", str(query), "-c", str(Path(work) / "objects"), "--objects",
            "--match", "all", "-k", "5", "--grid", str(args.picture),
        ]
        searched = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
        if searched.returncode:
            sys.exit(f"the object search failed: {searched.stderr}")
    whole, objects = runs["whole images"], runs["with --objects"]
    regions = objects["kinds"].get("region", 0)
    rows = [
        [name, f"{run['seconds']:.1f}", f"{run['rate']:.2f}", f"{run['seconds'] / whole['seconds']:.2f}x",
         ", ".join(f"{count} {kind}" for kind, count in sorted(run["kinds"].items())), f"{run['load'][0]:.1f} / {run['load'][1]:.1f}"]
        for name, run in runs.items()
    ]
    text = "\n".join([
        SECTION,
        "",
        f"Command: `nice -n 10 {command_line()}`",
        "",
        *machine_description(),
        clock.summary(),
        "",
        f"The first {len(photos)} photos of `voc_dev`'s objects.csv indexed into a new collection twice in one run, through "
        "`Collection.add` as `cbir index` does (decoding workers, batches, catalog and FAISS updates): whole images only, "
        f"then with `--objects` (shipped YOLOX-Nano at the default settings, each object's crop re-encoded): "
        f"{regions} regions ({regions / len(photos):.1f} per photo).",
        "",
        markdown_table(["index", "seconds", "photos/s", "time relative to whole images", "items", "load average before / after"], rows),
        "",
        f"Indexing with `--objects` runs at {objects['rate'] / whole['rate']:.2f} times the photos/s of whole images.",
        "",
        f"`docs/images/objects-search.png`: `cbir search {query.name} --objects --match all -k 5 --grid ...` on that collection "
        f"({query.name} is not in it; its objects are outlined in the first cell, each photo's matching objects in its own).",
    ])
    write_section(args.out, text)
    console.print(f"results written to {args.out}; picture {args.picture}")


if __name__ == "__main__":
    main()

"""Indexing speed through a collection on voc_dev: the same photos indexed whole and with their objects
(``cbir index`` and ``cbir index --objects``) in one run, photos/s and their ratio; multi-class mAP on
that collection as ``cbir search PHOTO --objects --match all`` ranks; then the grid of an object query
(``cbir search IMAGE --objects --match all --grid``) for docs/objects.md.
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

import numpy as np

from bench.common import REPOSITORY, RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from cbir.collection.collection import Collection
from cbir.detectors import DetectionSettings, load_detector
from cbir.encoders.encoder import EncoderSpec, shared_encoder
from cbir.evaluation import metrics
from cbir.evaluation.objects import ObjectSet, multiclass_judgement, multiclass_queries, read_objects
from cbir.pipelines.image import ImagePipeline
from cbir.pipelines.objects import ObjectPipeline
from cbir.progress import console, progress_bar
from cbir.search.regions import match_all

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


def retrieved_ap(scores: np.ndarray, judgement: np.ndarray) -> float:
    """AP of the photos ranked by decreasing ``scores``, junk left out; photos scored -inf are not
    retrieved (a positive among them counts as missed). NaN without positives."""
    positives = int((judgement == metrics.POSITIVE).sum())
    if not positives:
        return float("nan")
    keep = (judgement != metrics.JUNK) & np.isfinite(scores)
    relevant = (judgement[keep] == metrics.POSITIVE)[np.argsort(-scores[keep], kind="stable")]
    ranks = np.flatnonzero(relevant) + 1
    return float((np.arange(1, len(ranks) + 1) / ranks).sum() / positives)


def multiclass_map(store: Collection, objects: ObjectSet) -> dict:
    """Multi-class mAP (percent) on the indexed photos, each photo with 2+ annotated classes querying the
    others: by whole image; by match all over every item (as the evaluation's region index does and
    ``cbir search PHOTO --objects --match all`` ranks); the same
    with the photos lacking a region of every query object's class left out; and each query object
    matched only with regions of its class."""
    ids, vectors = store.vectors()
    items = store.catalog.get_items(ids)
    photo_of = {str(path.resolve()): number for number, path in enumerate(objects.photos)}
    whole = np.zeros((len(objects.photos), vectors.shape[1]), np.float32)
    region_rows, region_photo, region_label = [], [], []
    for row, item_id in enumerate(ids):
        item = items[int(item_id)]
        photo = photo_of[item.uri]
        if item.kind == "image":
            whole[photo] = vectors[row]
        else:
            region_rows.append(row)
            region_photo.append(photo)
            region_label.append(item.labels[0])
    regions, region_photo, region_label = vectors[region_rows], np.array(region_photo), np.array(region_label)
    queries = multiclass_queries(objects)
    judgement = multiclass_judgement(objects, queries)
    results = {
        "whole image": [],
        "match all, every item (`--objects --match all`)": [],
        "match all, every item, only photos with a region of every query class": [],
        "match all, regions of the class only": [],
    }
    without = 0
    for row, query in enumerate(queries):
        mine = np.flatnonzero(region_photo == query)
        results["whole image"].append(retrieved_ap(whole @ whole[query], judgement[row]))
        if not len(mine):
            without += 1
            for name in list(results)[1:]:
                results[name].append(results["whole image"][-1])
            continue
        every_item = match_all(regions[mine], whole, regions, region_photo)
        results["match all, every item (`--objects --match all`)"].append(retrieved_ap(every_item, judgement[row]))
        score = np.full(len(objects.photos), np.inf, np.float32)
        for own in mine:
            best = np.full(len(objects.photos), -np.inf, np.float32)
            same = np.flatnonzero(region_label == region_label[own])
            np.maximum.at(best, region_photo[same], regions[same] @ regions[own])
            score = np.minimum(score, best)
        holding = np.where(np.isfinite(score), every_item, -np.inf)
        results["match all, every item, only photos with a region of every query class"].append(retrieved_ap(holding, judgement[row]))
        results["match all, regions of the class only"].append(retrieved_ap(score, judgement[row]))
    return {"queries": len(queries), "without_objects": without, "mAP": {name: 100 * float(np.nanmean(aps)) for name, aps in results.items()}}


def write_section(path: Path, text: str) -> None:
    """Put ``text`` (a section starting with ``SECTION``) in the results file, replacing an earlier one."""
    old = path.read_text(encoding="utf-8") if path.is_file() else "# Object-level retrieval (voc_dev)\n"
    if SECTION in old:
        start = old.index(SECTION)
        following = old.find("\n## ", start + len(SECTION))
        old = old[:start].rstrip("\n") + ("\n\n" + old[following + 1 :] if following >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n", encoding="utf-8")


def prepare(data: Path, threads: int | None) -> Path:
    """The shared ``voc_dev`` folder under ``data`` (exits when it is missing), torch limited to ``threads`` if given."""
    voc = data / "voc_dev"
    if not (voc / "objects.csv").is_file():
        sys.exit(f"{voc} is missing: this benchmark needs the shared voc_dev data (--data DIR)")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return voc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--photos", type=int, default=100, help="index the first N photos of objects.csv")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: theirs); 1 on a crowded machine")
    parser.add_argument("--query-classes", default="person,horse", help="the picture's query: the first later photo holding these classes")
    parser.add_argument("--out", type=Path, default=RESULTS / "objects.md")
    parser.add_argument("--picture", type=Path, default=PICTURE)
    args = parser.parse_args(argv)
    voc = prepare(args.data, args.threads)
    clock = RunClock()
    classes = photo_classes(voc)
    names = list(classes)
    photos = [voc / "JPEGImages" / name for name in names[: args.photos]]
    annotated, _ = read_objects(voc / "objects.csv", voc / "JPEGImages")
    annotated = ObjectSet(annotated.photos[: args.photos], annotated.objects[: args.photos])
    if [path.name for path in annotated.photos] != [path.name for path in photos]:
        sys.exit("objects.csv lists photos that are missing from JPEGImages")
    wanted = set(args.query_classes.split(","))
    query = next(voc / "JPEGImages" / name for name in names[args.photos :] if wanted <= classes[name])
    encoder = shared_encoder(EncoderSpec())
    settings = DetectionSettings()
    detector = load_detector(settings=settings, threads=args.threads)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="cbir-bench-indexing-") as work:
        runs["whole images"] = index_once(ImagePipeline(encoder), photos, Path(work) / "images")
        runs["with --objects"] = index_once(ObjectPipeline(encoder, detector), photos, Path(work) / "objects")
        with Collection.open(Path(work) / "objects") as store:
            multiclass = multiclass_map(store, annotated)
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
        f"Multi-class queries on the same collection: each of the {multiclass['queries']} photos with non-difficult objects of 2+ "
        "classes queries the others; relevant: the photos holding all of its classes (protocol (b) of docs/objects.md). "
        "The query's objects are its own detected regions, as `cbir search PHOTO --objects` finds them (all of them, not "
        "one per class); a photo left out of a ranking counts as a miss"
        + (f"; {multiclass['without_objects']} queries without a detected object are ranked by their whole image." if multiclass["without_objects"] else "."),
        "",
        markdown_table(["ranking", "multi-class mAP"], [[name, f"{value:.1f}"] for name, value in multiclass["mAP"].items()]),
        "",
        f"`docs/images/objects-search.png`: `cbir search {query.name} --objects --match all -k 5 --grid ...` on that collection "
        f"({query.name} is not in it; its objects are outlined in the first cell, each photo's matching objects in its own).",
    ])
    write_section(args.out, text)
    console.print(f"results written to {args.out}; picture {args.picture}")


if __name__ == "__main__":
    main()

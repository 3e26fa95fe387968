"""Video retrieval: copy detection per transformation, shot detectors, index speed and size.

    nice -n 10 python -m bench.video [--data DIR] [--work DIR] [--asl 7] [--max-seconds 20] [--montages 2] [--parts ...]

Writes bench/results/video.md. Four parts, on ``videos/`` of the shared data
(``--parts`` measures some of them again and keeps the file's other sections):

1. the copy-detection protocol of ``cbir evaluate videos`` (clip -> video mAP
   with the pooled-vector and chamfer baselines of the same run, temporal IoU,
   photo -> moment hit rate), per transformation;
2. shot boundaries on montages with known cuts and dissolves (segments of the
   real clips and generated scenes): precision, recall and F1 of PySceneDetect's
   content detector and TransNetV2, and their speed;
3. index speed (decode + shots + encode, video seconds per wall second) on
   two of the long clips at full resolution, and descriptor bytes per hour;
4. the cost in a collection: the same clips indexed by ``cbir index`` (its
   own process, as a user runs it): wall time per hour of video and the
   collection's bytes per hour of video.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from bench.video.montage import Montage, write_montage
from cbir.evaluation.temporal_metrics import BoundaryScore, boundary_score
from cbir.evaluation.video_copies import TRANSFORMATIONS
from cbir.evaluation.videos import VideoProtocol, evaluate_videos, video_files
from cbir.io.shots import SHOT_DETECTORS, make_shot_detector
from cbir.io.video import Sampling, VideoScan, probe
from cbir.pipelines.video import describe_video
from cbir.progress import console

SPEED_CLIPS = ("bottle-detection.mp4", "car-detection.mp4")  # 70 s of video at 640x360 and 768x432
CUT_TOLERANCE = 2  # frames
DISSOLVE_SLACK = 2  # frames beyond a dissolve's ends that still count
PARTS = ("copies", "shots", "speed", "collection")
TITLES = {
    "copies": "Copy detection (`cbir evaluate videos`)",
    "shots": "Shot boundaries",
    "speed": "Index speed and size",
    "collection": "Cost in a collection (`cbir index`)",
}


class TimedDetector:
    """A shot detector whose own time is measured (decoding excluded)."""

    def __init__(self, detector):
        self.detector, self.seconds = detector, 0.0

    def analysis_size(self, width: int, height: int) -> tuple[int, int]:
        return self.detector.analysis_size(width, height)

    def push(self, pixels):
        started = time.perf_counter()
        cuts = self.detector.push(pixels)
        self.seconds += time.perf_counter() - started
        return cuts

    def finish(self):
        started = time.perf_counter()
        cuts = self.detector.finish()
        self.seconds += time.perf_counter() - started
        return cuts


def dissolve_score(found: list[int], dissolves: list[tuple[int, int]]) -> BoundaryScore:
    """Dissolves found: a boundary reported inside a dissolve (give or take ``DISSOLVE_SLACK``) finds it."""
    hit = sum(any(first - DISSOLVE_SLACK <= f <= last + DISSOLVE_SLACK + 1 for f in found) for first, last in dissolves)
    return BoundaryScore(hit, hit, len(dissolves))


def shot_rows(montages: list[Montage]) -> list[list[str]]:
    rows = []
    for name in SHOT_DETECTORS:
        cuts = BoundaryScore(0, 0, 0)
        overall = BoundaryScore(0, 0, 0)
        dissolves = BoundaryScore(0, 0, 0)
        seconds, frames = 0.0, 0
        for montage in montages:
            console.print(f"shots: {name} on {montage.path.name}")
            detector = TimedDetector(make_shot_detector(name))
            scan = VideoScan(montage.path, Sampling(rate=1.0), detector)
            for _ in scan:
                pass
            found = [shot.first_index for shot in scan.shots[1:]]
            in_dissolve = [f for f in found if any(a - DISSOLVE_SLACK <= f <= b + DISSOLVE_SLACK + 1 for a, b in montage.dissolves)]
            cut_part = boundary_score([f for f in found if f not in in_dissolve], montage.cuts, CUT_TOLERANCE)
            dissolve_part = dissolve_score(found, montage.dissolves)
            cuts += cut_part
            dissolves += dissolve_part
            truth = len(montage.cuts) + len(montage.dissolves)
            overall += BoundaryScore(cut_part.true_positives + dissolve_part.true_positives, len(found), truth)
            seconds += detector.seconds
            frames += scan.frames_decoded
        rows.append([
            name, f"{cuts.precision:.3f}", f"{cuts.recall:.3f}", f"{cuts.f1:.3f}", f"{dissolves.recall:.3f}",
            f"{overall.precision:.3f}", f"{overall.recall:.3f}", f"{overall.f1:.3f}", f"{frames / seconds:.0f}",
        ])
    return rows


def index_speed(paths: list[Path]) -> dict:
    """Decode + shot detection + encoding of sampled frames, at full resolution, and the decode alone."""
    from cbir.encoders.encoder import Encoder, EncoderSpec

    encoder = Encoder(EncoderSpec()).for_inference()
    result = {"videos": [], "video_seconds": 0.0, "wall": 0.0, "decode_wall": 0.0, "frames": 0, "shots": 0}
    for path in paths:
        console.print(f"index speed: {path.name}")
        started = time.perf_counter()
        for _ in VideoScan(path, Sampling(rate=1000.0, short_side=None, shot_keyframes=False)):
            pass
        result["decode_wall"] += time.perf_counter() - started
        started = time.perf_counter()
        described = describe_video(path, encoder)
        result["wall"] += time.perf_counter() - started
        result["video_seconds"] += described.duration
        result["frames"] += len(described.times)
        result["shots"] += len(described.shots)
        result["dim"] = int(described.vectors.shape[1])
        result["videos"].append(path.name)
    return result


def cbir_index(arguments: list[str]) -> dict:
    """``cbir index ... --json`` in its own process (this tree's ``cbir``): its report."""
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "cbir.cli", "index", *arguments, "--json"], capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"cbir index failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def collection_cost(paths: list[Path], work: Path) -> dict:
    """``cbir index`` on a folder of ``paths`` into a new collection: wall time (the whole process, model
    loading included, and the videos' part of its report) and the bytes the videos added to the collection."""
    videos, empty, collection = work / "collection-videos", work / "collection-empty", work / "collection"
    for folder in (videos, empty):
        folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if not (videos / path.name).exists():
            (videos / path.name).symlink_to(path)
    cbir_index([str(empty), "--collection", str(collection)])
    before = folder_bytes(collection)
    console.print(f"cbir index: {', '.join(path.name for path in paths)}")
    started = time.perf_counter()
    report = cbir_index([str(videos), "--collection", str(collection)])
    wall = time.perf_counter() - started
    return {
        "videos": [path.name for path in paths],
        "video_seconds": sum(probe(path).duration or 0.0 for path in paths),
        "wall": wall,
        "videos_wall": report["videos"]["seconds"],
        "added": report["videos"]["added"],
        "bytes": folder_bytes(collection) - before,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="The shared benchmark data folder (needs videos/).")
    parser.add_argument("--work", type=Path, default=None, help="Where copies and montages are written (default: a temporary folder).")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="Sources are cut to this length for the copies.")
    parser.add_argument("--montages", type=int, default=2, help="Montages for the shot detectors.")
    parser.add_argument("--shots", type=int, default=8, help="Segments per montage.")
    parser.add_argument("--asl", type=int, default=7, help="ASL clips used as sources beside the three long scenes.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "video.md")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="Measure only these parts; the file keeps its other sections.")
    args = parser.parse_args(argv)
    folder = args.data / "videos"
    if not folder.is_dir():
        console.print(f"[red]{folder} is missing: pass --data DIR with the shared benchmark data[/red]")
        return 2
    clock = RunClock()
    speed_clips = [args.data / "videos" / name for name in SPEED_CLIPS]
    protocol = VideoProtocol(seed=args.seed, max_seconds=args.max_seconds)
    measured = {}
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        folder = _sources(folder, args.asl, work / "sources")
        if "copies" in args.parts:
            console.print("copy detection")
            measured["copies"] = evaluate_videos(folder, work / "copies", protocol=protocol, step=lambda name, done, total: console.print(f"  {name} {done}/{total}") if done % 20 == 0 else None)
        if "shots" in args.parts:
            rng = np.random.default_rng(args.seed)
            montages = [write_montage(work / f"montage-{k}.mp4", video_files(folder), rng, shots=args.shots) for k in range(args.montages)]
            measured["shots"] = (montages, shot_rows(montages))
        if "speed" in args.parts:
            measured["speed"] = index_speed(speed_clips)
        if "collection" in args.parts:
            measured["collection"] = collection_cost(speed_clips, work)
    write(args, clock, protocol, measured)
    console.print(f"written to {args.out}")
    return 0


def _sources(folder: Path, asl: int, target: Path) -> Path:
    """A folder of links to the three long scenes and the first ``asl`` ASL clips."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("*.mp4")) + sorted((folder / "asl_gestures").glob("*.mkv"))[:asl]:
        link = target / path.name
        if not link.exists():
            link.symlink_to(path)
    return target


def write(args, clock, protocol, measured: dict) -> None:
    """The results file: the header and a section per part; a run of some parts keeps the file's other sections."""
    provenance = [f"Command: `nice -n 10 {command_line()}`", "", clock.summary(), ""]
    builders = {"copies": copies_section, "shots": shots_section, "speed": speed_section, "collection": collection_section}
    sections = {TITLES[part]: [f"## {TITLES[part]}", "", *builders[part](args, protocol, measured[part])] for part in measured}
    if set(measured) == set(PARTS) or not args.out.is_file():
        header = ["# Video retrieval", "", *provenance[:2], *machine_description(), clock.summary(), ""]
        kept: dict[str, list[str]] = {}
    else:
        header, kept = split_sections(args.out.read_text())
        sections = {title: [*lines[:2], *provenance, *lines[2:]] for title, lines in sections.items()}
    ordered = {**kept, **sections}  # a section measured again keeps its place
    text = "\n".join(header).rstrip("\n") + "\n\n" + "\n\n".join("\n".join(lines).strip("\n") for lines in ordered.values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


def split_sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(the lines before the first ``## `` title, each section's lines by title)."""
    header: list[str] = []
    sections: dict[str, list[str]] = {}
    current = header
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        current.append(line)
    return header, sections


def copies_section(args, protocol, evaluation) -> list[str]:
    config = evaluation.config
    per = config["per_transformation"]
    copy_rows = [
        [name, f"{per[name]['clip mAP']:.1f}", f"{per[name]['clip mAP (pooled)']:.1f}", f"{per[name]['clip mAP (chamfer)']:.1f}",
         f"{per[name]['temporal IoU']:.1f}", f"{per[name]['photo hit rate']:.1f}"]
        for name in [*TRANSFORMATIONS, "all"]
    ]
    return [
        f"{config['sources']} source videos from `videos/` (the 3 scenes of 30-140 s cut to their first {protocol.max_seconds:g} s, "
        f"the first {args.asl} ASL clips of 1.6-3.6 s, all reduced to a {protocol.work_side} px short side before editing), one copy per "
        f"transformation ({config['copies']} copies) and {config['distractors']} synthetic distractor videos; "
        f"{config['clip queries']} clip queries (an excerpt of up to {protocol.query_seconds:g} s of each source) and "
        f"{config['photo queries']} photo queries ({protocol.photos} frames of each source). Frames sampled at "
        f"{protocol.rate:g} per second plus one keyframe per shot, encoded with the default image encoder "
        f"({config['encoder']['backbone']} + {config['encoder']['pooling']}, {config['encoder']['image_size']} px). "
        f"Seed {protocol.seed}.",
        "",
        "- *clip mAP*: the excerpt ranks the database videos by frame-level temporal alignment (`cbir.search.temporal.align`, "
        "prefiltered by pooled video vectors); per transformation the database is that transformation's copies plus the "
        "distractors (one positive per query), *all* holds every copy (7 positives per query).",
        "- *pooled*, *chamfer*: baselines of the same run: cosine of mean-pooled video vectors; chamfer similarity "
        "(mean over query frames of the best frame anywhere in the video, no temporal order).",
        "- *temporal IoU*: between the segment the alignment returns in the right copy and where the excerpt truly is.",
        "- *photo hit rate*: the best moment is in a copy of the photo's source and its span, widened by one sampling "
        "period (1 s) on each side, holds the photo's time in that copy.",
        "",
        markdown_table(["transformation", "clip mAP", "pooled", "chamfer", "temporal IoU", "photo hit rate"], copy_rows),
        "",
        f"Evaluation time {config['seconds']['total']:.0f} s (generating copies {config['seconds']['generation']:.0f} s, "
        f"encoding the database {config['seconds']['database']:.0f} s for {config['database frames']} frames of "
        f"{config['database video seconds']:.0f} s of video).",
        "",
        "Raw metrics:",
        "",
        "```json",
        json.dumps(evaluation.to_dict()["metrics"], indent=1),
        "```",
    ]


def shots_section(args, protocol, measured) -> list[str]:
    montages, shots = measured
    cuts = sum(len(m.cuts) for m in montages)
    dissolves = sum(len(m.dissolves) for m in montages)
    frames = sum(m.frames for m in montages)
    return [
        f"{len(montages)} montages ({frames} frames at 25 fps, 384x216) of {args.shots} segments of 1.5-5 s each, taken from random "
        "real clips (one in four a generated scene of coloured shapes panning), joined by "
        f"{cuts} hard cuts and {dissolves} cross-dissolves of 10 frames. A cut is found when a reported shot start "
        f"lies within {CUT_TOLERANCE} frames of it (one-to-one matching); a dissolve when a reported start lies inside "
        f"it (give or take {DISSOLVE_SLACK} frames). Speed: frames per second of the detector alone (its frames already "
        "decoded and resized: 256 px wide for the content detector, 48x27 for TransNetV2), on the CPU.",
        "",
        markdown_table(["detector", "cut precision", "cut recall", "cut F1", "dissolve recall", "all precision",
                        "all recall", "all F1", "frames/s"], shots),
    ]


def speed_section(args, protocol, speed) -> list[str]:
    frames_per_second = speed["frames"] / speed["video_seconds"]
    bytes_per_hour = frames_per_second * 3600 * speed["dim"] * 4
    return [
        f"Two of the long clips at full resolution ({', '.join(speed['videos'])}; {speed['video_seconds']:.0f} s of video): "
        "decode every frame, detect shots with the content detector, encode the frames sampled at 1 per second plus "
        "the shot keyframes.",
        "",
        markdown_table(["measure", "value"], [
            ["decode + shots + encode", f"{speed['video_seconds'] / speed['wall']:.1f} video seconds per wall second"],
            ["decode alone (every frame to RGB)", f"{speed['video_seconds'] / speed['decode_wall']:.1f} video seconds per wall second"],
            ["hours of video indexed per hour", f"{speed['video_seconds'] / speed['wall']:.1f}"],
            ["frames kept per video second", f"{frames_per_second:.3f} ({speed['shots']} shots)"],
            ["descriptor bytes per hour of video", f"{bytes_per_hour / 1e6:.1f} MB ({speed['dim']}-d float32)"],
        ]),
    ]


def collection_section(args, protocol, cost) -> list[str]:
    hours = cost["video_seconds"] / 3600
    return [
        f"The same clips ({', '.join(cost['videos'])}; {cost['video_seconds']:.0f} s of video) indexed by `cbir index FOLDER "
        "--collection C` in its own process, as a user runs it, into a collection created empty just before (default encoder, "
        "`Flat` index): frames at 1 per second plus shot keyframes, stored as `frame` and `shot` items. The bytes are what "
        "the videos added to the collection folder (catalog with raw descriptors and metadata, FAISS index).",
        "",
        markdown_table(["measure", "value"], [
            ["videos indexed", str(cost["added"])],
            ["wall time of `cbir index` (model loading included)", f"{cost['wall']:.1f} s"],
            ["of which indexing the videos", f"{cost['videos_wall']:.1f} s"],
            ["index time per hour of video", f"{cost['videos_wall'] / hours / 3600:.2f} h ({cost['video_seconds'] / cost['videos_wall']:.2f} video seconds per wall second)"],
            ["collection bytes per hour of video", f"{cost['bytes'] / hours / 1e6:.1f} MB"],
        ]),
    ]


if __name__ == "__main__":
    raise SystemExit(main())

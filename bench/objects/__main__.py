"""Object-level retrieval on voc_dev: region index vs whole-image index, feature-map pooling vs
re-encoded crops, detector AP50 (YOLOX-Nano, YOLOv8n for comparison) and speed.
Writes bench/results/objects.md and docs/images/objects-query.png.

    nice -n 10 python -m bench.objects [--data DIR] [--work DIR] [--speed-photos 48]
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.common import REPOSITORY, RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from bench.objects.indexing import SECTION, prepare
from cbir.detectors import DetectionSettings, load_detector
from cbir.encoders.encoder import EncoderSpec, shared_encoder
from cbir.encoders.regions import crop_box, describe_crops, describe_with_regions
from cbir.evaluation.objects import (
    AP_MAX_BOXES, AP_SCORE_THRESHOLD, ObjectSet, PhotoIndex, detector_ap50, index_photos, read_objects, score_objects,
)
from cbir.search.regions import best_match
from cbir.io.images import load_image
from cbir.progress import console, progress_bar

PICTURE = REPOSITORY / "docs" / "images" / "objects-query.png"


def swapped_channels(image: Image.Image) -> Image.Image:
    red, green, blue = image.split()
    return Image.merge("RGB", (blue, green, red))


def detect_all(detector, photos: list[Path], transform=None) -> tuple[list, float]:
    """Detections of every photo and the detector's seconds (decoding excluded)."""
    found, seconds = [], 0.0
    with progress_bar(f"detecting ({detector.record()['detector']})") as update:
        for start in range(0, len(photos), 8):
            images = [load_image(path) for path in photos[start : start + 8]]
            if transform is not None:
                images = [transform(image) for image in images]
            step = time.perf_counter()
            found += detector.detect(images)
            seconds += time.perf_counter() - step
            update(len(found), len(photos))
    return found, seconds


def speed_rounds(encoder, detector, photos: list[Path], rounds: int = 2) -> dict[str, float]:
    """Photos per second of whole-image encoding, encoding + pooled regions, detection, and crop
    re-encoding, best of ``rounds`` alternating rounds on the same decoded photos."""
    images = [load_image(path) for path in photos]
    boxes = [d.boxes for d in detector.detect(images)]
    stages = {
        "whole-image encoding": lambda chunk, b: encoder.encode_images(chunk),
        "encoding + pooled regions": lambda chunk, b: describe_with_regions(encoder, chunk, b),
        "detection (YOLOX-Nano)": lambda chunk, b: detector.detect(chunk),
        "re-encoding the crops": lambda chunk, b: [describe_crops(encoder, image, bx) for image, bx in zip(chunk, b)],
    }
    best = {name: float("inf") for name in stages}
    for _ in range(rounds):
        for name, run in stages.items():
            started = time.perf_counter()
            for start in range(0, len(images), 8):
                run(images[start : start + 8], boxes[start : start + 8])
            best[name] = min(best[name], time.perf_counter() - started)
    rates = {name: len(images) / seconds for name, seconds in best.items()}
    rates["regions per photo"] = float(np.mean([len(b) for b in boxes]))
    return rates


def query_picture(objects, index: PhotoIndex, mode: str, path: Path, query_class: str = "horse", shown: int = 5) -> str:
    """The first object query of ``query_class`` and its top photos, each with its best-matching box."""
    rows = [i for i, o in enumerate(index.query_objects) if o.class_name == query_class]
    row = rows[0]
    query = index.region_queries(mode)[row : row + 1]
    scores = best_match(query, index.whole, index.region_vectors[mode], index.region_photo)[0]
    scores[index.query_photo[row]] = -np.inf
    top = np.argsort(-scores)[:shown]
    regions = index.region_vectors[mode]
    thumb, caption = 200, 30
    font = ImageFont.load_default(size=13)
    sheet = Image.new("RGB", ((shown + 1) * (thumb + 10), thumb + caption + 10), "white")
    draw = ImageDraw.Draw(sheet)
    source = load_image(objects.photos[index.query_photo[row]])
    cells = [(crop_box(source, index.query_objects[row].box), None, f"query: {query_class}", (40, 90, 220))]
    for rank, photo in enumerate(top, start=1):
        mine = np.flatnonzero(index.region_photo == photo)
        box, label = None, "whole image"
        if len(mine):
            similarities = regions[mine] @ query[0]
            best = int(similarities.argmax())
            if similarities[best] >= float(index.whole[photo] @ query[0]):
                box = index.regions[photo].boxes[best]
                label = index.regions[photo].labels[best]
        relevant = query_class in objects.classes(photo, with_difficult=True)
        cells.append((load_image(objects.photos[photo]), box, f"#{rank} {scores[photo]:.2f} {label}", (40, 170, 60) if relevant else (220, 50, 50)))
    for position, (image, box, text, colour) in enumerate(cells):
        scale = thumb / max(image.size)
        small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        x = 5 + position * (thumb + 10)
        draw.rectangle([x - 3, 2, x + thumb + 3, thumb + 8], outline=colour, width=3)
        sheet.paste(small, (x, 5))
        if box is not None:
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            draw.rectangle([x + x0, 5 + y0, x + x1, 5 + y1], outline=(255, 220, 0), width=3)
        draw.text((x, thumb + 12), text, fill=(20, 20, 20), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return f"query: the first annotated {query_class} of {objects.photos[index.query_photo[row]].name}"


def percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "cbir" / "bench-objects")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos of objects.csv")
    parser.add_argument("--speed-photos", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: theirs); 1 on a crowded machine")
    parser.add_argument("--out", type=Path, default=RESULTS / "objects.md")
    parser.add_argument("--picture", type=Path, default=PICTURE)
    parser.add_argument("--picture-class", default="horse")
    args = parser.parse_args(argv)
    voc = prepare(args.data, args.threads)
    clock = RunClock()
    objects, skipped = read_objects(voc / "objects.csv", voc / "JPEGImages")
    if args.photos is not None:
        objects = ObjectSet(objects.photos[: args.photos], objects.objects[: args.photos])
    spec = EncoderSpec()
    encoder = shared_encoder(spec)
    settings = DetectionSettings()
    yolox = load_detector(settings=settings, threads=args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    with progress_bar("detecting and describing photos") as update:
        index, objects, unreadable = index_photos(objects, encoder, yolox, ("pooled", "crop"), progress=update)
    with open(args.work / "index.pkl", "wb") as handle:
        pickle.dump((objects, index), handle)
    scores = {mode: score_objects(objects, index, mode) for mode in ("pooled", "crop")}
    ap_settings = replace(settings, score_threshold=AP_SCORE_THRESHOLD, max_boxes=AP_MAX_BOXES)
    rgb_found, _ = detect_all(yolox.with_settings(ap_settings), objects.photos, swapped_channels)
    yolov8_path = args.data / "weights" / "yolov8n_int8" / "yolov8n_int8.onnx"
    yolov8_ap, yolov8_seconds = None, None
    if yolov8_path.is_file():
        yolov8 = load_detector(yolov8_path, settings=ap_settings, threads=args.threads)
        found, yolov8_seconds = detect_all(yolov8, objects.photos)
        yolov8_ap = detector_ap50(objects, found)
    console.print("speed rounds")
    speed = speed_rounds(encoder, yolox, objects.photos[: args.speed_photos])
    picture_note = query_picture(objects, index, "pooled", args.picture, args.picture_class)
    write_results(args, clock, objects, index, scores, detector_ap50(objects, rgb_found), yolov8_ap, yolov8_seconds, speed, picture_note, skipped + unreadable, spec, settings)


def write_results(args, clock, objects, index, scores, rgb_ap, yolov8_ap, yolov8_seconds, speed, picture_note, skipped, spec, settings) -> None:
    pooled, crop = scores["pooled"], scores["crop"]
    n = len(objects.photos)
    seconds = index.seconds
    lines = [
        "# Object-level retrieval (voc_dev)",
        "",
        f"Command: `nice -n 10 {command_line()}`",
        "",
        *machine_description(),
        clock.summary(),
        "",
        f"Data: `voc_dev`, {n} PASCAL VOC 2007 photos" + (f" (the first {n} of objects.csv: the machine was shared)" if args.photos else "") + f", {pooled.counts['object_queries']} object queries (non-difficult "
        f"annotated boxes), {pooled.counts['multiclass_queries']} multi-class queries (photos with non-difficult objects of "
        "2+ classes). Protocol: docs/objects.md. Encoder: EfficientNet-Lite0 (packaged ImageNet weights), R-MAC, short "
        f"side {spec.image_size}. Detector: shipped YOLOX-Nano, score >= {settings.score_threshold}, NMS IoU "
        f"{settings.iou_threshold}, at most {settings.max_boxes} regions per photo, boxes under {settings.min_size:g} px dropped: "
        f"{pooled.counts['regions']} regions ({pooled.counts['regions'] / n:.1f} per photo), "
        f"{pooled.counts['photos_without_regions']} photos without any.",
        "",
        "## Retrieval (percent)",
        "",
        "Whole-image index: every photo is one descriptor; the object query is its crop encoded as an image, a "
        "multi-class query is its whole photo. Region index: a photo scores its best match over its whole image and "
        "its regions; a multi-class query matches each of its detected objects (one per class) and a photo scores "
        "the weakest of those best matches (match all).",
        "",
        markdown_table(
            ["index", "regions described by", "object mAP", "object P@10", "multi-class mAP", "multi-class P@10"],
            [
                ["whole image (baseline)", "-", percent(pooled.metrics["object_mAP_image"]), percent(pooled.metrics["object_P@10_image"]),
                 percent(pooled.metrics["multiclass_mAP_image"]), percent(pooled.metrics["multiclass_P@10_image"])],
                *[
                    [f"regions + whole image", name, percent(s.metrics["object_mAP_region"]), percent(s.metrics["object_P@10_region"]),
                     percent(s.metrics["multiclass_mAP_region"]), percent(s.metrics["multiclass_P@10_region"])]
                    for name, s in (("pooled from the feature map (one pass)", pooled), ("re-encoded crops", crop))
                ],
            ],
        ),
        "",
        "Ratios to the whole-image index: object mAP x"
        f"{pooled.metrics['object_mAP_region'] / pooled.metrics['object_mAP_image']:.2f} (pooled), x"
        f"{crop.metrics['object_mAP_region'] / crop.metrics['object_mAP_image']:.2f} (crops); multi-class mAP x"
        f"{pooled.metrics['multiclass_mAP_region'] / pooled.metrics['multiclass_mAP_image']:.2f} (pooled), x"
        f"{crop.metrics['multiclass_mAP_region'] / crop.metrics['multiclass_mAP_image']:.2f} (crops).",
        "",
        "Object mAP by class (whole image / regions pooled / regions re-encoded):",
        "",
        markdown_table(
            ["class", "queries", "whole image", "pooled", "crops"],
            [[name, str(row["queries"]), percent(row["image"]), percent(row["region"]), percent(crop.object_ap_by_class[name]["region"])]
             for name, row in pooled.object_ap_by_class.items()],
        ),
        "",
        "## Detector AP50 on the annotations (percent, VOC all-point AP, difficult boxes ignored)",
        "",
        f"Detections with score >= {AP_SCORE_THRESHOLD}, at most {AP_MAX_BOXES} per photo; COCO classes mapped to the 20 VOC classes (docs/objects.md).",
        "",
        markdown_table(
            ["detector", "mAP50", *pooled.detector_ap_by_class],
            [
                ["YOLOX-Nano (shipped; BGR input as exported)", percent(pooled.metrics["detector_AP50"]), *map(percent, pooled.detector_ap_by_class.values())],
                ["YOLOX-Nano fed RGB instead (check of the channel order)", percent(float(np.mean(list(rgb_ap.values())))), *(percent(rgb_ap.get(c, float("nan"))) for c in pooled.detector_ap_by_class)],
                *([["YOLOv8n int8 (AGPL, comparison only)", percent(float(np.mean(list(yolov8_ap.values())))), *(percent(yolov8_ap.get(c, float("nan"))) for c in pooled.detector_ap_by_class)]] if yolov8_ap else []),
            ],
        ),
        "",
        "## Speed",
        "",
        f"Whole run ({n} photos, one pass): detection {seconds['detection']:.1f} s, encoding with pooled regions and pooled "
        f"queries {seconds['encoding']:.1f} s, re-encoding the {pooled.counts['regions']} region crops {seconds['crop_regions']:.1f} s, "
        f"encoding the {pooled.counts['object_queries']} query crops {seconds['crop_queries']:.1f} s"
        + (f"; YOLOv8n int8 detection {yolov8_seconds:.1f} s ({n / yolov8_seconds:.1f} photos/s)." if yolov8_seconds else "."),
        "",
        f"Best of 2 alternating rounds on the first {args.speed_photos} photos, decoded beforehand, batches of 8 "
        f"({speed['regions per photo']:.1f} regions per photo):",
        "",
        markdown_table(
            ["stage", "photos/s", "time relative to whole-image encoding"],
            [[name, f"{rate:.1f}", f"{speed['whole-image encoding'] / rate:.2f}x"] for name, rate in speed.items() if name != "regions per photo"],
        ),
        "",
        "Indexing with regions costs the detection plus the region descriptors: pooled regions add almost nothing "
        "to the forward pass; re-encoding adds one forward pass per region.",
        "",
        "## Picture",
        "",
        f"`docs/images/objects-query.png`: {picture_note}, then the top 5 photos of the region index (pooled), the "
        f"best-matching region outlined in yellow, frames green when the photo holds a {args.picture_class}.",
    ]
    if skipped:
        lines += ["", f"Skipped: {len(skipped)} photos ({', '.join(str(p) for p, _ in skipped[:5])})."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
    if SECTION in old:  # the indexing section, measured by bench.objects.indexing, stays
        lines += ["", old[old.index(SECTION):].rstrip("\n")]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    console.print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

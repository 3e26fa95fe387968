"""The object side of ``cbir index --objects`` and ``cbir search --objects / --box / --label / --match``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import typer
from rich.table import Table

from cbir.commands.common import missing_inputs, print_json, print_report, removed_if_new_and_failed, results, user_errors
from cbir.progress import console, progress_bar

if TYPE_CHECKING:
    from PIL import Image

    from cbir.collection.collection import Collection
    from cbir.encoders.spec import EncoderSpec
    from cbir.search.objects import PhotoMatch, QueryObject

DetectorFileOption = typer.Option(None, "--detector", help="With --objects: a YOLOX or YOLOv8-style ONNX detector (default: the shipped YOLOX-Nano).")
MinScoreOption = typer.Option(None, "--min-score", help="With --objects: lowest detector score kept (default 0.3).")
MaxBoxesOption = typer.Option(None, "--max-boxes", help="With --objects: most objects kept per photo, best first (default 100).")
MinBoxOption = typer.Option(None, "--min-box", help="With --objects: objects whose shorter side is below this many pixels are dropped (default 8).")
BOX_COLOURS = ((255, 60, 40), (40, 150, 255), (40, 190, 70), (255, 170, 0), (190, 60, 230), (0, 190, 190))


def detection_settings(min_score: Optional[float], max_boxes: Optional[int], min_box: Optional[float], stored: dict | None = None):
    """The detection settings asked for, over the stored ones (or the defaults)."""
    from cbir.detectors import DetectionSettings

    base = DetectionSettings(**{key: stored[key] for key in ("score_threshold", "iou_threshold", "max_boxes", "min_size")}) if stored else DetectionSettings()
    given = {"score_threshold": min_score, "max_boxes": max_boxes, "min_size": min_box}
    return DetectionSettings(**{**vars(base), **{key: value for key, value in given.items() if value is not None}})


def open_object_collection(
    path: Path, spec: EncoderSpec | None, detector_file: Optional[Path], settings_options: tuple, index_type: str, search_effort: Optional[int]
) -> Collection:
    """The objects collection at ``path``, created when new; an existing one must have been built with the
    detector and settings asked for (the options left out take its own)."""
    from cbir.collection.collection import Collection
    from cbir.detectors import load_detector
    from cbir.encoders.encoder import shared_encoder
    from cbir.encoders.spec import EncoderSpec
    from cbir.pipelines.objects import ObjectPipeline, detector_record

    if (path / "manifest.json").is_file():
        store = Collection.open(path, spec)
        info = store.space()
        if info.pipeline != ObjectPipeline.kind:
            store.close()
            raise ValueError(f"{path} indexes whole images without their objects: index with --objects into a new collection")
        stored = info.encoder["detector"]
        asked = detection_settings(*settings_options, stored=stored)
        changed = [key for key, value in vars(asked).items() if stored[key] != value]
        if detector_file is not None and detector_record(load_detector(detector_file.expanduser(), asked))["sha256"] != stored["sha256"]:
            changed.append("detector")
        if changed:
            store.close()
            raise ValueError(f"{path} was indexed with {stored['detector']} and other detection settings ({', '.join(changed)}): "
                             "omit those options or index into a new collection")
        if search_effort is not None:
            store.set_search_effort(search_effort)
        return store
    detector = load_detector(detector_file.expanduser() if detector_file else None, detection_settings(*settings_options))
    pipeline = ObjectPipeline(shared_encoder(spec or EncoderSpec()), detector)
    return Collection.create(path, spec, index_type, search_effort, pipeline=pipeline)


def index_objects(
    directories: list[Path], collection: Path, spec: EncoderSpec | None, detector_file: Optional[Path], settings_options: tuple,
    index_type: str, search_effort: Optional[int], sync: bool, batch_size: int, workers: Optional[int], as_json: bool,
) -> None:
    """Index every photo under ``directories`` with its detected objects, and report the counts."""
    with user_errors():
        missing_inputs(directories)
        collection = collection.expanduser()
        with removed_if_new_and_failed(collection):
            store = open_object_collection(collection, spec, detector_file, settings_options, index_type, search_effort)
            with store, progress_bar("finding objects", enabled=not as_json) as update:
                pipeline = store.pipeline()
                report = store.add(directories, pipeline=pipeline, sync=sync, batch_size=batch_size, workers=workers, progress=update)
    if as_json:
        print_json({**report.to_dict(), "objects": vars(pipeline.counts)})
    else:
        print_report(report)
        results.print(pipeline.counts.describe())


def parse_box(text: str) -> tuple[float, ...]:
    """``x0,y0,x1,y1`` -> four numbers."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ValueError(f"--box takes four numbers x0,y0,x1,y1 in the query's pixels, not {text!r}")
    return values


def search_objects(
    image: Optional[Path], collection: Path, k: int, objects: bool, box: Optional[str], label: Optional[str],
    match: Optional[str], as_json: bool, grid: Optional[Path],
) -> None:
    """Search by the query's objects (``objects``), by a part of it (``box``), or list every object of class
    ``label`` (no ``image``)."""
    from cbir.collection.collection import Collection
    from cbir.io.images import load_image
    from cbir.search import objects as search

    with user_errors():
        if image is None and label is None:
            raise ValueError("give a query IMAGE, or --label CLASS to list every object of a class")
        if image is None and (objects or box or match):
            raise ValueError("--objects, --box and --match search with a query IMAGE")
        if objects and box:
            raise ValueError("--objects searches with each detected object, --box with one part: choose one")
        if match is not None and not objects:
            raise ValueError("--match ranks photos by the query's objects: add --objects")
        if match not in (None, *search.MATCHES):
            raise ValueError(f"--match is any or all, not {match!r}")
        with Collection.open(collection) as store:
            query = load_image(image) if image is not None else None
            output: dict = {"query": str(image)} if image is not None else {"label": label}
            drawn: list[QueryObject] = []
            if query is None:
                photos = search.labelled_photos(store, label, k)
            elif objects:
                queries = search.ObjectQueries(store)
                drawn = queries.detect(query)
                if not drawn:
                    raise ValueError(f"no object found in {image}: search it whole (without --objects) or give a part with --box")
                candidates, photos = search.rank_by_objects(store, drawn, match or "any", k, max(k, search.MIN_DEPTH), label)
                output["match"] = match or "any"
                per_object = [found_photos[:k] for found_photos in candidates]
                output["objects"] = [
                    {**found.to_dict(), "results": [photo.to_dict() for photo in found_photos]}
                    for found, found_photos in zip(drawn, per_object)
                ]
            else:
                part = search.ObjectQueries(store).box(query, parse_box(box))
                drawn = [part]
                output["box"] = part.to_dict()["box"]
                photos = search.search_photos(store, part.vector, k, label)[0]
            if grid is not None:
                _write_grid(query, drawn, photos, label, grid.expanduser())
    output["results"] = [photo.to_dict() for photo in photos]
    if as_json:
        print_json(output)
        return
    if objects:
        for number, (found, found_photos) in enumerate(zip(drawn, per_object), start=1):
            _print_photos(found_photos, f"object {number}: {found.label} {found.score:.2f} at {_box_text(found.box)}")
        title = f"photos by how many of the query's {len(drawn)} objects they hold ({match or 'any'})"
    elif box:
        title = f"part {_box_text(drawn[0].box)} of the query"
    else:
        title = f"photos with a {label}"
    _print_photos(photos, title)
    if grid is not None:
        console.print(f"grid written to {grid}")


def _box_text(box: Sequence[float]) -> str:
    return "(" + ", ".join(str(round(v)) for v in box) + ")"


def _print_photos(photos: list[PhotoMatch], title: Optional[str]) -> None:
    table = Table(title=title)
    for column in ("rank", "score", "photo", "matching objects"):
        table.add_column(column, overflow="fold", justify="right" if column in ("rank", "score") else "left")
    for photo in photos:
        boxes = [f"{(hit.labels or [hit.kind])[0]} {_box_text(hit.box)}" for hit in photo.outlines]
        held = f"holds {len(photo.objects)}: " if photo.objects else ""
        table.add_row(str(photo.rank), f"{photo.score:.4f}", photo.uri, held + ("; ".join(boxes) or "whole image"))
    results.print(table)


def draw_boxes(image: Image.Image, boxes: Sequence[tuple[Sequence[float], str]]) -> Image.Image:
    """A copy of ``image`` with each ``(box, caption)`` outlined and captioned, one colour per box."""
    from PIL import ImageDraw

    from cbir.fonts import draw_text

    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width, size = max(2, round(max(canvas.size) / 150)), max(12, round(max(canvas.size) / 25))
    for number, (box, caption) in enumerate(boxes):
        colour = BOX_COLOURS[number % len(BOX_COLOURS)]
        draw.rectangle(list(box), outline=colour, width=width)
        if caption:
            draw_text(draw, (box[0] + width + 1, box[1] + width), caption, size, colour)
    return canvas


def _write_grid(query: Optional[Image.Image], drawn: list[QueryObject], photos: list[PhotoMatch], label: Optional[str], path: Path) -> None:
    """The query (its boxes outlined) and the photos found, their matching boxes outlined."""
    from cbir.io.images import ImageLoadError, load_image
    from cbir.visualize import notice_tile, result_grid

    def load_photo(result):
        photo = by_uri[result.uri]
        try:
            image = load_image(photo.uri)
        except ImageLoadError:
            return notice_tile("unreadable")
        return draw_boxes(image, [(hit.box, (hit.labels or [""])[0]) for hit in photo.outlines])

    by_uri = {photo.uri: photo for photo in photos}
    cell = notice_tile(f"every {label}") if query is None else draw_boxes(query, [(found.box, found.label or "") for found in drawn])
    result_grid(cell, [photo.result() for photo in photos], path, load_hit=load_photo)

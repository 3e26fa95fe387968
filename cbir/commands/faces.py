"""``cbir faces ...`` commands, and the face side of ``cbir index --faces`` and ``cbir search --faces``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from cbir.commands.common import App, CollectionOption, print_json, print_report, registry_option, results, user_errors
from cbir.progress import console, progress_bar

if TYPE_CHECKING:
    from cbir.faces.analyzer import FaceSpec

faces_app = App(help="Face recognition: enrol people, identify and verify faces, calibrate the threshold.", no_args_is_help=True)

DetectorOption = registry_option("hog", "cbir.faces.detection:DETECTORS", "Face detector (yunet needs --detector-model).", "--detector")
DetectorModelOption = typer.Option(None, "--detector-model", help="YuNet ONNX file (or its folder).")
UpsampleOption = typer.Option(1, "--upsample", help="dlib detectors: double the image this many times to find faces under 80 px (2 for faces of ~20-40 px).")
EncoderOption = typer.Option(
    None, "--face-encoder",
    help="Face encoder: fusion (the default: dlib_resnet_v1 and mobilefacenet together), dlib_resnet_v1 or mobilefacenet; a collection keeps the one it was built with.",
)
ThresholdOption = typer.Option(None, "--threshold", help="Similarity a match needs (default: the calibrated one).")
CropsOption = typer.Option(False, "--crops", help="Images are face photos centred on their subject (as in LFW or ORL): take the face covering the centre, else the centre itself.")
JsonOption = typer.Option(False, "--json", help="Print JSON.")


def _spec(detector: str, detector_model: Optional[Path], upsample: int, encoder: Optional[str] = None) -> FaceSpec:
    from cbir.faces.analyzer import FaceSpec

    return FaceSpec(detector=detector, upsample=upsample, detector_model=str(detector_model) if detector_model else None, encoder=encoder)


def index_faces(
    directories: list[Path],
    collection: Path,
    spec: FaceSpec | None = None,
    sync: bool = False,
    batch_size: int = 16,
    workers: Optional[int] = None,
    as_json: bool = False,
    encoder=None,
    index_type: str = "Flat",
) -> None:
    """Index every face of the photos under ``directories`` and report the counts."""
    from cbir.collection.collection import Collection
    from cbir.faces.people import People
    from cbir.pipelines.faces import FacePipeline

    with user_errors():
        store = Collection.open_or_create(collection, encoder, index_type)
        with store:
            people = People(store, spec)
            pipeline = FacePipeline(people.analyzer)
            with progress_bar("finding faces", enabled=not as_json) as update:
                report = store.add(directories, pipeline=pipeline, sync=sync, batch_size=batch_size, workers=workers, progress=update)
    if as_json:
        print_json({**report.to_dict(), "faces": vars(pipeline.counts)})
    else:
        print_report(report)
        results.print(pipeline.counts.describe())


def search_faces(
    image: Path, collection: Path, k: int = 10, label: Optional[str] = None, as_json: bool = False,
    grid: Optional[Path] = None, spec: FaceSpec | None = None,
) -> None:
    """Photos of the collection that contain the people whose faces are in ``image``."""
    import numpy as np

    from cbir.collection.collection import Collection
    from cbir.faces.people import People
    from cbir.pipelines.faces import FACE_SPACE

    with user_errors(), Collection.open(collection) as store:
        if FACE_SPACE not in store.manifest.spaces:
            raise ValueError(f"{collection} holds no faces: index photos with 'cbir index DIR --faces -c {collection}'")
        analyzer = People(store, spec).analyzer
        scan = analyzer.scan(image)
        if not scan.faces:
            raise ValueError(f"no face found in {image} ({scan.describe()}); try --upsample 2 for small faces")
        hits = store.search_vectors(np.stack([face.vector for face in scan.faces]), k * 4, label=label, space=FACE_SPACE)
        per_face = [_best_per_photo(results, k) for results in hits]
        if grid is not None:
            from cbir.faces.annotate import draw_box
            from cbir.io.images import load_image
            from cbir.visualize import result_grid

            result_grid(draw_box(load_image(image), scan.faces[0].box), per_face[0], grid)
    if as_json:
        faces = [
            {"box": [round(v, 1) for v in face.box], "results": [hit.to_dict() for hit in hits]}
            for face, hits in zip(scan.faces, per_face)
        ]
        print_json({"query": str(image), "faces": faces})
        return
    for number, (face, hits) in enumerate(zip(scan.faces, per_face), start=1):
        table = Table(title=f"face {number} at {tuple(round(v) for v in face.box)}")
        for column in ("rank", "similarity", "photo", "box", "labels"):
            table.add_column(column, overflow="fold")
        for result in hits:
            box = tuple(round(v) for v in result.box) if result.box else ""
            table.add_row(str(result.rank), f"{result.score:.4f}", result.uri, str(box), ", ".join(result.labels))
        results.print(table)
    if grid is not None:
        console.print(f"grid written to {grid}")


def _best_per_photo(results, k: int):
    """The best-scoring face of each photo, re-ranked, at most ``k``."""
    seen, kept = set(), []
    for result in results:
        if result.uri in seen:
            continue
        seen.add(result.uri)
        result.rank = len(kept) + 1
        kept.append(result)
    return kept[:k]


@faces_app.command("index")
def index_command(
    directories: list[Path] = typer.Argument(..., help="Photo folders (searched recursively) or files."),
    collection: Path = CollectionOption,
    detector: str = DetectorOption,
    detector_model: Optional[Path] = DetectorModelOption,
    upsample: int = UpsampleOption,
    face_encoder: Optional[str] = EncoderOption,
    sync: bool = typer.Option(False, "--sync", help="Also remove faces of photos that were deleted."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: one per core, up to 4)."),
    as_json: bool = JsonOption,
) -> None:
    """Index every face of the photos (as 'cbir index --faces', with detector choices)."""
    index_faces(directories, collection, _spec(detector, detector_model, upsample, face_encoder), sync=sync, workers=workers, as_json=as_json)


@faces_app.command()
def enroll(
    name: str = typer.Argument(..., help="The person's name."),
    images: list[Path] = typer.Argument(..., help="Photos of the person (files or folders); the largest face of each is used."),
    collection: Path = CollectionOption,
    detector: str = DetectorOption,
    detector_model: Optional[Path] = DetectorModelOption,
    upsample: int = UpsampleOption,
    face_encoder: Optional[str] = EncoderOption,
    crops: bool = CropsOption,
    as_json: bool = JsonOption,
) -> None:
    """Enrol a person from one or more photos."""
    from cbir.collection.collection import Collection
    from cbir.faces.people import People

    with user_errors():
        with Collection.open_or_create(collection) as store:
            people = People(store, _spec(detector, detector_model, upsample, face_encoder))
            with progress_bar(f"enrolling {name}", enabled=not as_json) as update:
                result = people.enroll(name, images, crops, progress=update)
            total = people.people().get(result.name, 0)
    if as_json:
        print_json({**result.report.to_dict(), "name": result.name, "photos_enrolled": total, "notes": result.notes})
        return
    print_report(result.report)
    for uri, note in result.notes:
        console.print(f"[yellow]{uri}: {note}[/yellow]")
    results.print(f"{result.name}: {total} photo{'s' if total != 1 else ''} enrolled")


@faces_app.command()
def identify(
    image: Path = typer.Argument(..., help="Photo to identify faces in."),
    collection: Path = CollectionOption,
    annotate: Optional[Path] = typer.Option(None, "--annotate", help="Write IMAGE with boxes and names."),
    threshold: Optional[float] = ThresholdOption,
    detector: str = DetectorOption,
    detector_model: Optional[Path] = DetectorModelOption,
    upsample: int = UpsampleOption,
    face_encoder: Optional[str] = EncoderOption,
    as_json: bool = JsonOption,
) -> None:
    """Name every face of IMAGE (or 'unknown' below the threshold)."""
    from cbir.collection.collection import Collection
    from cbir.faces.people import People

    with user_errors(), Collection.open(collection) as store:
        people = People(store, _spec(detector, detector_model, upsample, face_encoder))
        found, scan, in_force = people.identify(image, threshold)
        if annotate is not None:
            from cbir.faces.annotate import annotate_faces
            from cbir.io.images import load_image

            annotate_faces(load_image(image), found, annotate)
    if as_json:
        print_json({"image": str(image), "threshold": in_force.to_dict(), "found": scan.describe(), "faces": [f.to_dict() for f in found]})
        return
    table = Table(title=f"{image}: {scan.describe()}")
    for column in ("face", "box", "name", "similarity", "closest enrolled"):
        table.add_column(column)
    for number, item in enumerate(found, start=1):
        colour = "green" if item.name else "red"
        box = str(tuple(round(v) for v in item.face.box))
        table.add_row(str(number), box, f"[{colour}]{item.label}[/{colour}]", f"{item.similarity:.4f}", item.candidate or "")
    results.print(table)
    results.print(f"threshold: similarity >= {in_force.describe()}")
    if annotate is not None:
        console.print(f"annotated picture written to {annotate}")


@faces_app.command()
def verify(
    first: Path = typer.Argument(..., help="First photo."),
    second: Path = typer.Argument(..., help="Second photo."),
    collection: Optional[Path] = typer.Option(None, "--collection", "-c", help="Use this collection's calibrated threshold."),
    threshold: Optional[float] = ThresholdOption,
    detector: str = DetectorOption,
    detector_model: Optional[Path] = DetectorModelOption,
    upsample: int = UpsampleOption,
    face_encoder: Optional[str] = EncoderOption,
    crops: bool = CropsOption,
    as_json: bool = JsonOption,
) -> None:
    """Are the largest faces of two photos the same person?"""
    from cbir.collection.collection import Collection
    from cbir.faces.analyzer import FaceAnalyzer
    from cbir.faces.calibration import DEFAULT_SOURCE
    from cbir.faces.people import People, Threshold, verify_faces

    spec = _spec(detector, detector_model, upsample, face_encoder)
    with user_errors():
        if collection is not None:
            with Collection.open(collection) as store:
                result = People(store, spec).verify(first, second, threshold, crops)
        else:
            analyzer = FaceAnalyzer(spec)
            in_force = Threshold(threshold, "given explicitly") if threshold is not None else Threshold(analyzer.encoder.default_threshold, DEFAULT_SOURCE)
            result = verify_faces(analyzer, first, second, in_force, crops)
    if as_json:
        print_json({"first": str(first), "second": str(second), **result.to_dict()})
        return
    verdict = "[green]same person[/green]" if result.same else "[red]different people[/red]"
    results.print(f"{verdict}: similarity {result.similarity:.4f} (distance {result.distance:.4f})")
    results.print(f"threshold: similarity >= {result.threshold.describe()}")
    for path, count in zip((first, second), result.faces):
        if count > 1:
            console.print(f"[yellow]{path}: {count} faces, compared the largest[/yellow]")


@faces_app.command("list")
def list_people(collection: Path = CollectionOption, as_json: bool = JsonOption) -> None:
    """Enrolled people and their number of photos."""
    from cbir.collection.collection import Collection
    from cbir.faces.people import People

    with user_errors(), Collection.open(collection) as store:
        people = People(store)
        enrolled = people.people()
        in_force = people.threshold()
    if as_json:
        print_json({"people": enrolled, "threshold": in_force.to_dict()})
        return
    table = Table(title=f"{len(enrolled)} people enrolled in {collection}")
    table.add_column("name")
    table.add_column("photos", justify="right")
    for name, count in enrolled.items():
        table.add_row(name, str(count))
    results.print(table)
    results.print(f"threshold: similarity >= {in_force.describe()}")


@faces_app.command()
def remove(name: str = typer.Argument(..., help="Person to forget."), collection: Path = CollectionOption) -> None:
    """Forget an enrolled person."""
    from cbir.collection.collection import Collection
    from cbir.faces.people import People

    with user_errors(), Collection.open(collection) as store:
        removed = People(store).remove(name)
    results.print(f"removed {name} ({removed} photo{'s' if removed != 1 else ''})")


@faces_app.command()
def calibrate(
    collection: Path = CollectionOption,
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="LFW-format pairs.txt (with --images)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Root of the images named in --pairs."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Folder of per-person subfolders (every pair is used)."),
    far: float = typer.Option(1e-3, "--far", help="Target false-accept rate."),
    crops: bool = typer.Option(True, "--crops/--no-crops", help="Images are face crops: use the centre when no face is detected."),
    detector: str = DetectorOption,
    detector_model: Optional[Path] = DetectorModelOption,
    upsample: int = UpsampleOption,
    face_encoder: Optional[str] = EncoderOption,
    as_json: bool = JsonOption,
) -> None:
    """Choose the match threshold for a target false-accept rate and store it in the collection."""
    from cbir.collection.collection import Collection
    from cbir.faces.people import People

    with user_errors():
        if (pairs is None) == (folder is None) or (pairs is not None and images is None):
            raise ValueError("give either --pairs FILE --images ROOT, or --folder DIR")
        with Collection.open_or_create(collection) as store:
            people = People(store, _spec(detector, detector_model, upsample, face_encoder))
            if pairs is not None:
                calibration, report = people.calibrate_pairs(pairs, images, far, crops)
            else:
                with progress_bar("encoding faces", enabled=not as_json) as update:
                    calibration, report = people.calibrate_folder(folder, far, crops, progress=update)
    if as_json:
        print_json({"calibration": vars(calibration), "distance": calibration.distance, "report": report})
        return
    results.print(f"[green]stored[/green] {calibration.describe()}")
    if "accuracy" in report:
        results.print(f"k-fold accuracy {report['accuracy']:.2f} %, ROC AUC {report['roc_auc']:.2f} % on these pairs")

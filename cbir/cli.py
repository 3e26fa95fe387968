"""The ``cbir`` command line: the collection commands (index, search, info, whiten, demo) and the
sub-commands of ``cbir.commands``, assembled into one app. Nothing imports from this module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from cbir.commands import evaluate, scale, serve, train, video
from cbir.commands.common import (
    App,
    BackboneOption,
    CollectionOption,
    EncoderFileOption,
    GemOption,
    MultiscaleOption,
    PoolingOption,
    PrecisionOption,
    SizeOption,
    WeightsOption,
    encoder_spec_from_options,
    moved_encoder_spec,
    missing_inputs,
    print_json,
    print_report,
    removed_if_new_and_failed,
    results,
    user_errors,
)
from cbir.commands.doctor import doctor
from cbir.commands.faces import faces_app, index_faces, search_faces
from cbir.commands.medical import index_medical, medical_app
from cbir.commands.objects import DetectorFileOption, MaxBoxesOption, MinBoxOption, MinScoreOption, index_objects, search_objects
from cbir.encoders.spec import DEFAULT_BATCH_SIZE
from cbir.progress import console, progress_bar

if TYPE_CHECKING:
    from cbir.collection.collection import SearchResult

app = App(help="Deep content-based retrieval: index a collection, search it by example.", no_args_is_help=True)
app.add_typer(faces_app, name="faces")
app.add_typer(medical_app, name="medical")


@app.command()
def index(
    directories: list[Path] = typer.Argument(..., help="Image folders (searched recursively) or files."),
    collection: Path = CollectionOption,
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    precision: Optional[str] = PrecisionOption,
    index_type: str = typer.Option("Flat", "--index", help="FAISS factory string for a new collection: Flat (exact), IVF1024,Flat for large collections, HNSW32, IVF1024,PQ64,Refine(SQ8) ..."),
    search_effort: Optional[int] = typer.Option(
        None, "--search-effort", help="IVF nprobe / HNSW efSearch the collection searches at, stored with it (default 16 / 64)."
    ),
    sync: bool = typer.Option(False, "--sync", help="Also remove items whose files were deleted."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, help="Images per forward pass."),
    workers: Optional[int] = typer.Option(None, help="Decoding worker processes (default: the cores left free by the network's threads; 0 decodes in-process)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    faces: bool = typer.Option(False, "--faces", help="Index every face found (items of kind face, in the face space)."),
    videos: bool = typer.Option(True, "--video/--no-video", help="Also index the videos found: their frames and shots, beside the photos."),
    objects: bool = typer.Option(False, "--objects", help="Also index every object detected (items of kind region, beside the whole images)."),
    detector: Optional[Path] = DetectorFileOption,
    min_score: Optional[float] = MinScoreOption,
    max_boxes: Optional[int] = MaxBoxesOption,
    min_box: Optional[float] = MinBoxOption,
    medical: bool = typer.Option(False, "--medical", help="Index DICOM series, NIfTI volumes and MedMNIST .npz splits (slice and series items, medical space)."),
    vector_store: Optional[str] = typer.Option(
        None, "--store", help="Where a new collection keeps its vectors: faiss (default), milvus-lite, or milvus://HOST:PORT/NAME (token: $CBIR_MILVUS_TOKEN)."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Decode and encode on Ray Data: 'local' starts a Ray here (one encoder actor per core); else a cluster's address.",
    ),
) -> None:
    """Index images (and videos) into a collection; re-running adds only new or changed files."""
    if medical:
        with user_errors():
            spec = encoder_spec_from_options(backbone, pooling, gem_p, size, multiscale, weights, encoder, precision)
        return index_medical(directories, collection, spec, sync, batch_size, workers, as_json, index_type)
    if objects or any(option is not None for option in (detector, min_score, max_boxes, min_box)):
        with user_errors():
            if not objects:
                raise ValueError("--detector, --min-score, --max-boxes and --min-box set how --objects detects: add --objects")
            spec = encoder_spec_from_options(backbone, pooling, gem_p, size, multiscale, weights, encoder, precision)
        return index_objects(
            directories, collection, spec, detector, (min_score, max_boxes, min_box), index_type, search_effort, sync, batch_size, workers, as_json
        )
    if faces:
        with user_errors():
            missing_inputs(directories)
            spec = encoder_spec_from_options(backbone, pooling, gem_p, size, multiscale, weights, encoder, precision)
        return index_faces(directories, collection, None, sync, batch_size, workers, as_json, spec, index_type)
    from cbir.collection.collection import Collection

    with user_errors():
        missing_inputs(directories)
        spec = encoder_spec_from_options(backbone, pooling, gem_p, size, multiscale, weights, encoder, precision)
        collection = collection.expanduser()
        with removed_if_new_and_failed(collection):
            store = Collection.open_or_create(collection, spec, index_type, search_effort, vector_store)
            with store:
                with progress_bar("indexing", enabled=not as_json) as update:
                    pipeline = None
                    if ray_address:
                        from cbir.pipelines.distributed import RayPipeline

                        pipeline = RayPipeline(store.pipeline(), ray_address)
                    roots = video.photo_roots(directories) if videos else directories
                    report = store.add(roots, pipeline, sync=sync, batch_size=batch_size, workers=workers, progress=update)
                found = video.index_videos(store, directories, sync, batch_size, not as_json, report.skipped) if videos else None
    if as_json:
        print_json({**report.to_dict(), **({"videos": found.to_dict()} if found else {})})
    else:
        print_report(report)
        if found:
            video.print_video_report(found)


def print_results(hits: list[SearchResult]) -> None:
    """Search hits as a table on stdout."""
    table = Table(show_lines=False)
    for column in ("rank", "score", "kind", "uri", "id"):
        table.add_column(column, overflow="fold", justify="right" if column in ("rank", "score", "id") else "left")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.4f}", hit.kind, hit.uri, str(hit.item_id))
    results.print(table)


@app.command()
def search(
    image: Optional[Path] = typer.Argument(
        None, help="Query image, or video clip (found by its suffix, or with --clip); optional with --label: every object of that class."
    ),
    collection: Path = CollectionOption,
    k: int = typer.Option(10, "-k", min=1, help="Number of results (1 or more)."),
    kind: Optional[list[str]] = typer.Option(None, help="Only items of this kind (image, region, face, frame); repeatable."),
    label: Optional[str] = typer.Option(None, help="Only items carrying this label (a detected object's class; without IMAGE: every object of that class)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    grid: Optional[Path] = typer.Option(None, help="Write the query and its results as one picture."),
    faces: bool = typer.Option(False, "--faces", help="Search with each face of IMAGE: photos of the same people."),
    qe: int = typer.Option(0, "--qe", help="alpha-query expansion with this many first hits (0: off)."),
    qe_alpha: float = typer.Option(3.0, "--qe-alpha", help="Weight hits by score**alpha in query expansion."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="The collection's encoder file, where it has moved."),
    clip: bool = typer.Option(False, "--clip", help="IMAGE is a video clip: rank the videos that hold it."),
    objects: bool = typer.Option(False, "--objects", help="Search with each object detected in IMAGE; photos ranked by how many they hold."),
    box: Optional[str] = typer.Option(None, "--box", help="Search with this part of IMAGE: x0,y0,x1,y1 in its pixels."),
    match: Optional[str] = typer.Option(None, "--match", help="With --objects: any (photos holding the most query objects first) or all (only photos holding every one)."),
    local: bool = typer.Option(False, "--local", help="Search in this process even when a cbir serve is running for the collection."),
) -> None:
    """Find the items most similar to IMAGE (and the moments of videos that show it); a clip finds the videos that hold it.

    Answered by the collection's running cbir serve, if any, unless --local."""
    if image is None or objects or box is not None or match is not None:
        return search_objects(image, collection, k, objects, box, label, match, as_json, grid)
    if faces:
        return search_faces(image, collection, k, label, as_json, grid)
    if clip or video.is_clip(image):
        return video.search_clip(image, collection, k, as_json, grid, encoder)
    if not (local or grid or qe or encoder):
        from cbir.commands.remote import search_through_server

        served = search_through_server(collection, image, k, kind, label)
        if served is not None:
            console.print(f"answered by the cbir serve at {served[0]} (--local to search in this process)")
            if as_json:
                print_json({"query": str(image), "results": served[1]})
            else:
                print_results(served[1])
            return
    from cbir.collection.collection import Collection

    with user_errors():
        spec = moved_encoder_spec(collection, encoder) if encoder else None
        with Collection.open(collection, spec) as store:
            moments = video.moments_of(store, image, k) if kind is None and label is None else None
            kind = video.photo_kinds(store) if moments is not None else kind
            if qe > 0:
                from cbir.search.reranking import expanded_search

                hits = expanded_search(store, image, k, qe, qe_alpha, kind, label)
            else:
                hits = store.search(image, k=k, kinds=kind, label=label)
            if grid is not None and moments is not None:
                video.moment_grid(image, hits, moments, grid.expanduser())
            elif grid is not None:
                from cbir.io.images import load_image
                from cbir.visualize import result_grid

                result_grid(load_image(image), hits, grid.expanduser())
    if as_json:
        print_json({"query": str(image), "results": [hit.to_dict() for hit in hits], **video.moments_json(moments)})
    else:
        print_results(hits)
        if moments is not None:
            video.print_moments(moments)
        if grid is not None:
            console.print(f"grid written to {grid}")


@app.command()
def info(collection: Path = CollectionOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts by kind, encoder, index and size on disk."""
    from cbir.collection.collection import Collection

    with user_errors(), Collection.open(collection) as store:
        details = store.info()
    if as_json:
        print_json(details)
        return
    table = Table(show_header=False, title=str(collection))
    table.add_row("items", str(details["items"]))
    for kind, count in details["by_kind"].items():
        table.add_row(f"  {kind}", str(count))
    spec = details["encoder"]
    table.add_row("encoder", f"{spec['backbone']} / {spec['pooling']} / {spec['image_size']}px / scales {spec['scales']} / {spec.get('precision', 'fp32')}")
    for name, space in details["spaces"].items():
        whitened = ", whitened" if space["whitening"] else ""
        effort = f" ({space['search_effort_sets']} {space['search_effort']})" if space["search_effort"] is not None else ""
        table.add_row(f"space {name}", f"{space['items']} x {space['dim']}-d, index {space['index']}{effort}{whitened}")
    table.add_row("skipped files", str(details["skipped"]))
    table.add_row("size on disk", f"{details['size_bytes'] / 1e6:.1f} MB")
    results.print(table)


@app.command()
def whiten(
    collection: Path = CollectionOption,
    learn_from: Optional[Path] = typer.Option(None, "--from", help="Learn on another collection's descriptors (recommended)."),
    dim: Optional[int] = typer.Option(None, help="Keep this many whitened dimensions."),
    remove: bool = typer.Option(False, "--remove", help="Drop the whitening."),
) -> None:
    """Learn PCA-whitening for a collection's image space and re-index it."""
    from cbir.collection.collection import Collection

    with user_errors(), Collection.open(collection) as store:
        if remove:
            store.remove_whitening()
            results.print("whitening removed")
            return
        training = None
        if learn_from is not None:
            with Collection.open(learn_from, store.encoder_spec) as other:
                training = other.vectors()[1]
            console.print(f"learning whitening on {len(training)} descriptors of {learn_from}")
        else:
            console.print("[yellow]learning whitening on the collection itself (use --from to learn it on other data)[/yellow]")
        whitening = store.learn_whitening(training=training, dim=dim)
        results.print(f"whitening learned: {whitening.projection.shape[1]} -> {whitening.dim} dimensions")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Where to write the demo collection and pictures."),
) -> None:
    """Build a small collection from images shipped with installed packages and search it."""
    from cbir.demo import run_demo

    with user_errors():
        run_demo(out)


app.add_typer(evaluate.evaluate_app, name="evaluate")
app.command()(serve.serve)
app.command()(doctor)
app.command()(train.train)
app.command()(scale.migrate)

if __name__ == "__main__":
    app()

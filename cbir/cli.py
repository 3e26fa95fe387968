"""The ``cbir`` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.table import Table

from cbir.collection.collection import Collection, CollectionError, IndexReport, SearchResult
from cbir.collection.errors import describe_failure
from cbir.encoders.backbones import WeightsUnavailableError
from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, MULTI_SCALES, EncoderSpec, encoder_spec_from_file
from cbir.encoders.pooling import POOLINGS
from cbir.faces.cli import faces_app, index_faces, search_faces
from cbir.io.images import ImageLoadError, load_image
from cbir.progress import console, progress_bar
from cbir.training.command import train as train_command

app = typer.Typer(help="Deep content-based retrieval: index a collection, search it by example.", no_args_is_help=True)
app.add_typer(faces_app, name="faces")

CollectionOption = typer.Option(..., "--collection", "-c", help="Collection directory.")
EncoderFileOption = typer.Option(None, "--encoder", help="Encoder file written by 'cbir train'.")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a red message and exit code 2."""
    try:
        yield
    except (CollectionError, WeightsUnavailableError, ImageLoadError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    except (OSError, sqlite3.Error) as error:
        console.print(f"[red]error:[/red] {describe_failure(error)}")
        raise typer.Exit(2) from None


def encoder_spec_from_options(
    backbone: Optional[str],
    pooling: Optional[str],
    gem_p: Optional[float],
    size: Optional[int],
    multiscale: Optional[bool],
    weights: Optional[Path],
    encoder_file: Optional[Path] = None,
) -> EncoderSpec | None:
    """An EncoderSpec from the options given, or None when none was given.

    With ``encoder_file`` (from ``cbir train``) only ``size`` and ``multiscale`` may be changed.
    """
    if encoder_file is not None:
        if backbone or pooling or gem_p is not None or weights:
            raise ValueError("--encoder FILE already fixes backbone, pooling and weights: drop those options")
        spec = encoder_spec_from_file(encoder_file)
        changes = {"image_size": size} if size is not None else {}
        if multiscale is not None:
            changes["scales"] = MULTI_SCALES if multiscale else (1.0,)
        return dataclasses.replace(spec, **changes)
    given = {
        "backbone": backbone,
        "pooling": pooling,
        "gem_p": gem_p,
        "image_size": size,
        "scales": MULTI_SCALES if multiscale else ((1.0,) if multiscale is not None else None),
        "weights": str(weights.resolve()) if weights else None,
    }
    given = {key: value for key, value in given.items() if value is not None}
    return EncoderSpec(**given) if given else None


def print_report(report: IndexReport) -> None:
    console.print(
        f"[green]added {report.added}[/green], updated {report.updated}, unchanged {report.unchanged}, "
        f"removed {report.removed}, skipped {len(report.skipped)} in {report.seconds:.1f} s"
    )
    if report.skipped:
        table = Table(title="Skipped files", title_style="bold yellow")
        table.add_column("file", overflow="fold")
        table.add_column("reason", overflow="fold")
        for uri, reason in report.skipped:
            table.add_row(uri, reason)
        console.print(table)


@app.command()
def index(
    directories: list[Path] = typer.Argument(..., help="Image folders (searched recursively) or files."),
    collection: Path = CollectionOption,
    backbone: Optional[str] = typer.Option(None, help="efficientnet_lite0 (default, offline), a timm name, or torchvision/NAME."),
    pooling: Optional[str] = typer.Option(None, help=f"One of {', '.join(POOLINGS)} (default rmac)."),
    gem_p: Optional[float] = typer.Option(None, help="GeM exponent."),
    size: Optional[int] = typer.Option(None, help="Short side of the resized image, in pixels (default 224)."),
    multiscale: Optional[bool] = typer.Option(None, "--multiscale/--single-scale", help="Average over scales 1, 1/sqrt(2), 1/2."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (state dict)."),
    encoder: Optional[Path] = EncoderFileOption,
    index_type: str = typer.Option("Flat", "--index", help="FAISS factory string for a new collection: Flat, HNSW32, IVF256,PQ32 ..."),
    sync: bool = typer.Option(False, "--sync", help="Also remove items whose files were deleted."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, help="Images per forward pass."),
    workers: Optional[int] = typer.Option(None, help="Decoding worker processes (default: the cores left free by the network's threads; 0 decodes in-process)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    faces: bool = typer.Option(False, "--faces", help="Index every face found (items of kind face, in the face space)."),
) -> None:
    """Index images into a collection; re-running adds only new or changed files."""
    with user_errors():
        spec = encoder_spec_from_options(backbone, pooling, gem_p, size, multiscale, weights, encoder)
        if faces:
            return index_faces(directories, collection, None, sync, batch_size, workers, as_json, spec, index_type)
        store = Collection.open_or_create(collection, spec, index_type)
        with store, progress_bar("indexing", enabled=not as_json) as update:
            report = store.add(directories, sync=sync, batch_size=batch_size, workers=workers, progress=update)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)


def print_results(results: list[SearchResult]) -> None:
    table = Table(show_lines=False)
    for column in ("rank", "score", "kind", "uri", "id"):
        table.add_column(column, overflow="fold", justify="right" if column in ("rank", "score", "id") else "left")
    for result in results:
        table.add_row(str(result.rank), f"{result.score:.4f}", result.kind, result.uri, str(result.item_id))
    console.print(table)


@app.command()
def search(
    image: Path = typer.Argument(..., help="Query image."),
    collection: Path = CollectionOption,
    k: int = typer.Option(10, "-k", help="Number of results."),
    kind: Optional[list[str]] = typer.Option(None, help="Only items of this kind (image, region, face, frame); repeatable."),
    label: Optional[str] = typer.Option(None, help="Only items carrying this label."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    grid: Optional[Path] = typer.Option(None, help="Write the query and its results as one picture."),
    faces: bool = typer.Option(False, "--faces", help="Search with each face of IMAGE: photos of the same people."),
    qe: int = typer.Option(0, "--qe", help="alpha-query expansion with this many first hits (0: off)."),
    qe_alpha: float = typer.Option(3.0, "--qe-alpha", help="Weight hits by score**alpha in query expansion."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="The collection's encoder file, where it has moved."),
) -> None:
    """Find the items most similar to IMAGE."""
    if faces:
        return search_faces(image, collection, k, label, as_json, grid)
    with user_errors(), Collection.open(collection, encoder_spec_from_file(encoder) if encoder else None) as store:
        if qe > 0:
            from cbir.evaluation.reranking import expanded_search

            results = expanded_search(store, image, k, qe, qe_alpha, kind, label)
        else:
            results = store.search(image, k=k, kinds=kind, label=label)
        if grid is not None:
            from cbir.visualize import result_grid

            result_grid(load_image(image), results, grid)
    if as_json:
        typer.echo(json.dumps({"query": str(image), "results": [r.to_dict() for r in results]}, indent=2))
    else:
        print_results(results)
        if grid is not None:
            console.print(f"grid written to {grid}")


@app.command()
def info(collection: Path = CollectionOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts by kind, encoder, index and size on disk."""
    with user_errors(), Collection.open(collection) as store:
        details = store.info()
    if as_json:
        typer.echo(json.dumps(details, indent=2))
        return
    table = Table(show_header=False, title=str(collection))
    table.add_row("items", str(details["items"]))
    for kind, count in details["by_kind"].items():
        table.add_row(f"  {kind}", str(count))
    spec = details["encoder"]
    table.add_row("encoder", f"{spec['backbone']} / {spec['pooling']} / {spec['image_size']}px / scales {spec['scales']}")
    for name, space in details["spaces"].items():
        whitened = ", whitened" if space["whitening"] else ""
        table.add_row(f"space {name}", f"{space['items']} x {space['dim']}-d, index {space['index']}{whitened}")
    table.add_row("skipped files", str(details["skipped"]))
    table.add_row("size on disk", f"{details['size_bytes'] / 1e6:.1f} MB")
    console.print(table)


@app.command()
def whiten(
    collection: Path = CollectionOption,
    learn_from: Optional[Path] = typer.Option(None, "--from", help="Learn on another collection's descriptors (recommended)."),
    dim: Optional[int] = typer.Option(None, help="Keep this many whitened dimensions."),
    remove: bool = typer.Option(False, "--remove", help="Drop the whitening."),
) -> None:
    """Learn PCA-whitening for a collection's image space and re-index it."""
    with user_errors(), Collection.open(collection) as store:
        if remove:
            store.remove_whitening()
            console.print("whitening removed")
            return
        training = None
        if learn_from is not None:
            with Collection.open(learn_from, store.encoder_spec) as other:
                training = other.vectors()[1]
            console.print(f"learning whitening on {len(training)} descriptors of {learn_from}")
        else:
            console.print("[yellow]learning whitening on the collection itself (use --from to learn it on other data)[/yellow]")
        whitening = store.learn_whitening(training=training, dim=dim)
        console.print(f"whitening learned: {whitening.projection.shape[1]} -> {whitening.dim} dimensions")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Where to write the demo collection and pictures."),
) -> None:
    """Build a small collection from images shipped with installed packages and search it."""
    from cbir.demo import run_demo

    with user_errors():
        run_demo(out)


from cbir.evaluation.cli import evaluate_app  # noqa: E402  (its commands use the helpers above)
from cbir.collection.cli import doctor  # noqa: E402
from cbir.server.command import serve  # noqa: E402

app.add_typer(evaluate_app, name="evaluate")
app.command()(serve)
app.command()(doctor)
app.command()(train_command)

if __name__ == "__main__":
    app()

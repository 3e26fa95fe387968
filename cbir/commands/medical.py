"""``cbir medical ...`` commands, and the medical side of ``cbir index --medical``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from cbir.commands.common import (
    App, CollectionOption, missing_inputs, print_json, print_report, removed_if_new_and_failed, results, user_errors, write_json,
)
from cbir.progress import console, progress_bar

if TYPE_CHECKING:
    from cbir.encoders.spec import EncoderSpec
    from cbir.medical.cases import CaseReport

medical_app = App(help="Medical scans: the most and least similar cases of a DICOM, NIfTI or picture query.", no_args_is_help=True)


def index_medical(
    directories: list[Path],
    collection: Path,
    spec: EncoderSpec | None = None,
    sync: bool = False,
    batch_size: int = 32,
    workers: Optional[int] = None,
    as_json: bool = False,
    index_type: str = "Flat",
) -> None:
    """Index the DICOM series, NIfTI volumes and MedMNIST splits under ``directories`` into the medical space."""
    from cbir.collection.collection import Collection, CollectionError
    from cbir.encoders.encoder import shared_encoder
    from cbir.encoders.spec import EncoderSpec
    from cbir.pipelines.medical import MEDICAL_SPACE, MedicalPipeline

    with user_errors():
        missing_inputs(directories)
        collection = collection.expanduser()
        with removed_if_new_and_failed(collection):
            if (collection / "manifest.json").is_file():
                store = Collection.open(collection)
                if MEDICAL_SPACE in store.manifest.spaces:
                    pipeline = store.pipeline(MEDICAL_SPACE)
                    if spec is not None and spec.identity() != pipeline.encoder.spec.identity():
                        store.close()
                        raise CollectionError(f"{collection} encodes its scans with another encoder: omit the encoder options")
                else:
                    pipeline = MedicalPipeline(shared_encoder(spec or EncoderSpec()))
            else:
                pipeline = MedicalPipeline(shared_encoder(spec or EncoderSpec()))
                store = Collection.create(collection, index=index_type, pipeline=pipeline)
            with store, progress_bar("indexing scans", enabled=not as_json) as update:
                report = store.add(directories, pipeline=pipeline, sync=sync, batch_size=batch_size, workers=workers, progress=update)
    if as_json:
        print_json(report.to_dict())
    else:
        print_report(report)


@medical_app.command()
def report(
    query: str = typer.Argument(..., help="A DICOM file or series folder, a NIfTI volume, a picture (PNG, JPEG), or an item id."),
    collection: Path = CollectionOption,
    k: int = typer.Option(5, "-k", min=1, help="Number of most and of least similar cases."),
    exclude_same_patient: bool = typer.Option(False, "--exclude-same-patient", help="Leave out the cases of the query's patient."),
    modality: Optional[str] = typer.Option(None, help="Modality of a picture query (CT, MR, CR ...); pictures have none of their own."),
    out: Path = typer.Option(Path("medical-report"), "--out", help="Folder for case.png, case.json, index.html and report.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """The query beside its k most and k least similar cases of the same modality, with scores, labels and a vote."""
    from cbir.collection.collection import Collection
    from cbir.medical.cases import case_picture, query_from_item, query_from_path, similar_cases
    from cbir.medical.report import write_report_page, write_similar_cases

    with user_errors(), Collection.open(collection.expanduser()) as store:
        path = Path(query).expanduser()
        if query.isdigit() and not path.exists():
            found = query_from_item(store, int(query))
        else:
            found = query_from_path(store, path, modality)
        cases = similar_cases(store, found, k, exclude_same_patient)
        pictures = cases.similar_cases(lambda hit: case_picture(store, hit.item))
        picture, _ = write_similar_cases(pictures, out.expanduser(), "case")
        write_json(out.expanduser() / "case.json", cases.to_dict())
        notes = [f"{cases.candidates} candidate cases of modality {found.modality or 'unknown'} ({found.kind} items)"
                 + (", the query's patient left out" if exclude_same_patient else "") + "."]
        page = write_report_page([(pictures, picture)], out.expanduser(), f"Most and least similar cases: {found.name}", notes)
    if as_json:
        print_json({**cases.to_dict(), "picture": str(picture), "page": str(page)})
        return
    print_cases(cases)
    console.print(f"report written to {page} (picture {picture})")


def print_cases(cases: CaseReport) -> None:
    """The most and least similar cases and the vote, as tables on stdout."""
    for title, hits in (("most similar", cases.most), ("least similar", cases.least)):
        table = Table(title=f"{title} to {cases.query.name}")
        for column in ("rank", "similarity", "case", "label", "id"):
            table.add_column(column, overflow="fold", justify="right" if column in ("rank", "similarity", "id") else "left")
        for rank, hit in enumerate(hits, start=1):
            data = hit.to_dict()
            table.add_row(str(rank), f"{hit.score:.4f}", data["name"], data["label"] or "", str(hit.item.id))
        results.print(table)
    vote = cases.to_dict()["vote"]
    results.print("vote of the most similar: " + (", ".join(f"{label}: {count}" for label, count in vote.items()) or "no labels"))

"""``cbir evaluate videos``: the copy-detection protocol from the command line."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cbir.progress import console, progress_bar


def videos(
    folder: Path = typer.Argument(..., help="Folder of source videos (searched recursively)."),
    work: Optional[Path] = typer.Option(None, "--work", help="Keep the generated copies in this folder (default: a temporary one)."),
    seed: int = typer.Option(0, help="Seed of the edits, excerpts and distractors."),
    rate: float = typer.Option(1.0, help="Sampled frames per second of video."),
    query_seconds: float = typer.Option(8.0, "--query-seconds", help="Length of each clip query."),
    photos: int = typer.Option(3, help="Photo queries per source video."),
    distractors: int = typer.Option(10, help="Synthetic distractor videos."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Cut sources to this length (0: whole)."),
    shots: str = typer.Option("content", help="Shot detector for keyframes: content, transnetv2 or none."),
    transformation: Optional[list[str]] = typer.Option(None, "--transformation", "-t", help="Evaluate only these edits (repeatable; default all)."),
    backbone: Optional[str] = typer.Option(None, help="efficientnet_lite0 (default, offline), a timm name, or torchvision/NAME."),
    pooling: Optional[str] = typer.Option(None, help="Pooling (default rmac)."),
    size: Optional[int] = typer.Option(None, help="Short side of the encoded frames, in pixels (default 224)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="A fine-tuned encoder file from 'cbir train'."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write {protocol, metrics, config} to this file."),
    batch_size: Optional[int] = typer.Option(None, help="Frames per forward pass (default 8)."),
) -> None:
    """Video copy detection: clip -> video mAP, photo -> moment hit rate and temporal IoU, per transformation."""
    from cbir.commands.common import user_errors
    from cbir.commands.evaluate import encoder_choice
    from cbir.encoders.spec import DEFAULT_BATCH_SIZE
    from cbir.evaluation.video_copies import TRANSFORMATIONS
    from cbir.evaluation.videos import VideoProtocol, evaluate_videos
    from cbir.io.video import VideoError

    with user_errors():
        if shots not in ("content", "transnetv2", "none"):
            raise ValueError(f"--shots must be content, transnetv2 or none, not {shots!r}")
        unknown = sorted(set(transformation or ()) - set(TRANSFORMATIONS))
        if unknown:
            raise ValueError(f"unknown transformation {', '.join(unknown)}: choose from {', '.join(TRANSFORMATIONS)}")
        choice = encoder_choice(backbone, pooling, None, size, None, None, encoder)
        protocol = VideoProtocol(
            seed=seed, rate=rate, query_seconds=query_seconds, photos=photos, distractors=distractors,
            max_seconds=max_seconds or None, shot_detector=None if shots == "none" else shots,
            transformations=tuple(transformation) if transformation else TRANSFORMATIONS,
        )
        with tempfile.TemporaryDirectory() as temporary, progress_bar("copies and encoding", unit="video") as update:
            current = [""]

            def step(name: str, done: int, total: int) -> None:
                if name != current[0]:
                    console.print(name)
                    current[0] = name
                update(done, total)

            try:
                result = evaluate_videos(folder, work or temporary, choice, protocol, batch_size or DEFAULT_BATCH_SIZE, step)
            except VideoError as error:
                raise ValueError(str(error)) from None
        print_video_result(result.to_dict())
        if json_file is not None:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
            console.print(f"metrics written to {json_file}")


def print_video_result(document: dict) -> None:
    """One row per transformation, then the setup and skipped files."""
    config = document["config"]
    console.print(
        f"[bold]videos: {config['sources']} sources, {config['copies']} copies, {config['distractors']} distractors; "
        f"{config['clip queries']} clip and {config['photo queries']} photo queries[/bold]",
        soft_wrap=True,
    )
    table = Table()
    columns = ("clip mAP", "clip mAP (pooled)", "clip mAP (chamfer)", "temporal IoU", "photo hit rate")
    table.add_column("transformation")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in config["per_transformation"].items():
        table.add_row(name, *("n/a" if math.isnan(values[c]) else f"{values[c]:.1f}" for c in columns))
    console.print(table)
    console.print("encoder: " + ", ".join(f"{k} {v}" for k, v in config["encoder"].items() if v is not None), highlight=False)
    for entry in document["skipped"][:10]:
        console.print(f"[yellow]skipped[/yellow] {entry['file']}: {entry['reason']}", soft_wrap=True, highlight=False)
    for note in document["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True, highlight=False)

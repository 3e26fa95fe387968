"""The video side of ``cbir index`` (videos beside photos) and ``cbir search`` (a photo's moments; the
videos that hold a query clip)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from rich.markup import escape
from rich.table import Table

from cbir.commands.common import moved_encoder_spec, print_json, print_report, results, user_errors
from cbir.io.video_files import is_video_path
from cbir.progress import console, progress_bar

if TYPE_CHECKING:
    from cbir.collection.collection import Collection, IndexReport, SearchResult
    from cbir.search.video import ClipHit, MomentHit

VIDEO_KINDS = ("frame", "shot")
INSTALL_VIDEO = "pip install 'cbir[video]'"


def is_clip(path: Path) -> bool:
    """Whether a query file is a video clip (by its suffix)."""
    return is_video_path(path)


def photo_roots(paths: list[Path]) -> list[Path]:
    """What the photo pipeline indexes: folders, and files named on the command line that are not videos."""
    return [path for path in paths if not (path.is_file() and is_video_path(path))]


def index_videos(
    store: Collection, paths: list[Path], sync: bool, batch_size: int, show_progress: bool, reported: list[tuple[str, str]]
) -> IndexReport | None:
    """Index the videos under ``paths`` into the collection's image space (progress in video seconds per
    second); None when there was no video to index, keep or remove. ``reported``: files the photo run
    already listed as skipped (not listed twice)."""
    from cbir.pipelines.image import IMAGE_SPACE
    from cbir.pipelines.video import VideoPipeline

    roots = [path for path in paths if path.is_dir() or is_video_path(path)]
    if not roots or _without_video_support(roots):
        return None
    pipeline = VideoPipeline(store.pipeline(IMAGE_SPACE).encoder)
    with progress_bar("indexing videos", unit="video s", enabled=show_progress) as update:
        pipeline.progress = lambda done, total: update(round(done), round(total))
        report = store.add(roots, pipeline=pipeline, sync=sync, batch_size=batch_size)
    already = set(reported)
    report.skipped = [entry for entry in report.skipped if entry not in already]
    counts = (report.added, report.updated, report.unchanged, report.removed, report.gone, len(report.skipped))
    return report if any(counts) else None


def _without_video_support(roots: list[Path]) -> bool:
    """True, after saying so, when videos are there but PyAV or PySceneDetect is not installed (the
    videos are left alone, to be indexed once it is)."""
    import importlib.util

    from cbir.collection.files import find_files

    missing = [name for name in ("av", "scenedetect") if importlib.util.find_spec(name) is None]
    if not missing:
        return False
    found = len(find_files([root.expanduser().resolve() for root in roots], is_video_path).files)
    if found:
        console.print(
            f"[yellow]{found} video file(s) not indexed: reading videos needs {' and '.join(missing)} "
            f"({escape(INSTALL_VIDEO)}); --no-video silences this[/yellow]",
            soft_wrap=True,
        )
    return True


def print_video_report(report: IndexReport) -> None:
    results.print("[bold]videos[/bold]")
    print_report(report)


# photo -> moments ----------------------------------------------------------------
def photo_kinds(store: Collection) -> list[str]:
    """The kinds a photo query ranks as photos: every kind but frames and shots (``image`` when there is none)."""
    return [kind for kind in store.catalog.counts_by_kind() if kind not in VIDEO_KINDS] or ["image"]


def moments_of(store: Collection, image: Path, k: int) -> list[MomentHit] | None:
    """The photo's ``k`` best moments, or None when the collection holds no video."""
    from cbir.search.video import find_moments, has_videos

    if not has_videos(store):
        return None
    return find_moments(store, store.encode(image), k)


def moments_json(moments: list[MomentHit] | None) -> dict:
    """The ``moments`` entry of a search's JSON (none for a collection without video)."""
    return {} if moments is None else {"moments": [moment.to_dict() for moment in moments]}


def print_moments(moments: list[MomentHit]) -> None:
    table = Table(title="moments in videos")
    for column in ("rank", "score", "video", "from", "to", "frames"):
        table.add_column(column, overflow="fold", justify="left" if column == "video" else "right")
    for moment in moments:
        table.add_row(
            str(moment.rank), f"{moment.score:.4f}", moment.uri, _clock(moment.t_start), _clock(moment.t_end), str(len(moment.frames))
        )
    results.print(table)


def moment_grid(image: Path, hits: list[SearchResult], moments: list[MomentHit], path: Path) -> None:
    """The query, then one row per photo hit or moment (a strip of its frames), by score."""
    from cbir.io.images import load_image
    from cbir.search.video_strips import Strip, spread, write_strips

    rows = [(hit.score, Strip(f"#{hit.rank}  {hit.score:.3f}\n{Path(hit.uri).name[:26]}", hit.uri, picture=_picture(hit.uri))) for hit in hits]
    rows += [
        (moment.score, Strip(
            f"moment {moment.rank}  {moment.score:.3f}\n{Path(moment.uri).name[:26]}\n{_clock(moment.t_start)} - {_clock(moment.t_end)}",
            moment.uri, spread(moment.frames),
        ))
        for moment in moments
    ]
    rows.sort(key=lambda row: -row[0])
    write_strips([Strip(f"query\n{image.name[:26]}", str(image), picture=load_image(image)), *(strip for _, strip in rows)], path)


def _picture(uri: str):
    """A photo hit's picture, or a grey tile saying why there is none."""
    from cbir.io.images import ImageLoadError, load_image
    from cbir.visualize import notice_tile

    try:
        return load_image(uri)
    except (ImageLoadError, OSError):
        return notice_tile("file missing" if not Path(uri).exists() else "unreadable")


# clip -> videos --------------------------------------------------------------------
def search_clip(clip: Path, collection: Path, k: int, as_json: bool, grid: Optional[Path], encoder: Optional[Path]) -> None:
    """Rank the collection's videos for a query clip and show the aligned segments."""
    from cbir.collection.collection import Collection
    from cbir.pipelines.image import IMAGE_SPACE
    from cbir.pipelines.video import VideoPipeline
    from cbir.io.video import VideoError
    from cbir.search.video import find_clip, has_videos

    with user_errors():
        spec = moved_encoder_spec(collection, encoder) if encoder else None
        with Collection.open(collection, spec) as store:
            if not has_videos(store):
                raise ValueError(f"{collection} holds no video to search with a clip: index videos with 'cbir index DIR --collection {collection}'")
            pipeline = VideoPipeline(store.pipeline(IMAGE_SPACE).encoder)
            try:
                described = pipeline.describe(clip.expanduser())
            except VideoError as error:
                raise ValueError(f"the query clip cannot be read: {error}") from None
            hits = find_clip(store, described, k)
        if grid is not None:
            _clip_grid(clip, described.duration, hits, grid.expanduser())
    if as_json:
        print_json({"query": str(clip), "query_duration": round(described.duration, 3), "results": [hit.to_dict() for hit in hits]})
        return
    _print_clip_hits(hits)
    if grid is not None:
        console.print(f"grid written to {grid}")


def _print_clip_hits(hits: list[ClipHit]) -> None:
    table = Table(title="videos holding the clip")
    for column in ("rank", "score", "video", "from", "to", "clip from", "clip to"):
        table.add_column(column, overflow="fold", justify="left" if column == "video" else "right")
    for hit in hits:
        table.add_row(
            str(hit.rank), f"{hit.score:.4f}", hit.uri, _clock(hit.t_start), _clock(hit.t_end), _clock(hit.query_start), _clock(hit.query_end)
        )
    results.print(table)


def _clip_grid(clip: Path, duration: float, hits: list[ClipHit], path: Path) -> None:
    from cbir.search.video_strips import Strip, segment_times, write_strips

    strips = [Strip(f"query clip\n{clip.name[:26]}\n{_clock(0)} - {_clock(duration)}", str(clip), segment_times(0.0, duration))]
    strips += [
        Strip(f"#{hit.rank}  {hit.score:.3f}\n{Path(hit.uri).name[:26]}\n{_clock(hit.t_start)} - {_clock(hit.t_end)}", hit.uri, segment_times(hit.t_start, hit.t_end))
        for hit in hits
    ]
    write_strips(strips, path)


def _clock(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` past an hour)."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"

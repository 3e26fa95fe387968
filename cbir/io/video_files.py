"""Which files are videos, by suffix: no decoding library needed (the command line imports this)."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp", ".ogv"})


def is_video_path(path: Path) -> bool:
    """Whether ``path`` has a common video file suffix."""
    return path.suffix.lower() in VIDEO_SUFFIXES

"""Finding the files to index under folders, and saying why the others are left out.

A name that is not valid UTF-8 cannot be a catalog URI (SQLite stores text
as UTF-8), special files (FIFOs, devices, sockets) would block or never end,
and broken links or link loops cannot be read: each of these is listed as
skipped with its reason instead of stopping the run or vanishing silently.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cbir.collection.errors import CollectionError

NOT_UTF8 = "the file name is not valid UTF-8; rename it (for example with 'convmv -f latin1 -t utf8')"


class MissingRootError(CollectionError):
    """A folder or file given to index that does not exist."""


@dataclass
class FoundFiles:
    """Regular files to index, and (display name, reason) of those left out."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def display_name(path: Path) -> str:
    """``path`` as UTF-8 text; bytes that are not UTF-8 appear as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_files(roots: list[Path], accepts: Callable[[Path], bool]) -> FoundFiles:
    """Regular files under ``roots`` (recursively) that ``accepts`` takes, in a stable order."""
    found = FoundFiles()
    for root in roots:
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                _classify(path, accepts, found)
        elif root.exists():
            _classify(root, lambda _: True, found)
        else:
            raise MissingRootError(f"{display_name(root)} does not exist")
    found.files = list(dict.fromkeys(found.files))
    return found


def _classify(path: Path, accepts: Callable[[Path], bool], found: FoundFiles) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if path.is_symlink():
            found.skipped.append((display_name(path), f"broken link or link loop: {error.strerror or error}"))
        elif accepts(path):
            found.skipped.append((display_name(path), f"unreadable: {error.strerror or error}"))
        return
    if stat.S_ISDIR(mode):
        return
    if not stat.S_ISREG(mode):
        found.skipped.append((display_name(path), f"not a regular file ({_kind(mode)})"))
        return
    if not accepts(path):
        return
    if not is_utf8_name(path):
        found.skipped.append((display_name(path), NOT_UTF8))
        return
    found.files.append(path)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "special file"

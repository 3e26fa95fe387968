"""Serving a verified open file whole or in part: HTTP range requests (RFC 9110), so a browser's video
player can start anywhere in a file and seek without downloading it all."""

from __future__ import annotations

import re
from typing import BinaryIO, Callable

from fastapi.responses import StreamingResponse

from cbir.server.errors import ApiError

CHUNK = 1 << 20
SINGLE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=...`` request, clipped to the file; None for the whole
    file (no header, or one this server answers whole: several ranges, another unit). 416 when it lies
    past the end."""
    if not header:
        return None
    match = SINGLE_RANGE.match(header)
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start, end = int(first), int(last) if last else size - 1
    if last and end < start:
        return None  # not a valid range: ignored, as RFC 9110 says
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(416, f"the requested range lies outside the file ({size} bytes)", headers={"Content-Range": f"bytes */{size}"})


def file_response(
    stream: BinaryIO, size: int, range_header: str | None, media_type: str, headers: dict[str, str], close: Callable[[], None]
) -> StreamingResponse:
    """200 with the whole file, or 206 with the requested bytes and their ``Content-Range``; ``close`` runs
    when the response is sent."""
    from starlette.background import BackgroundTask

    wanted = requested_range(range_header, size)
    first, last = wanted if wanted is not None else (0, size - 1)
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(max(0, last - first + 1))}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    stream.seek(first)
    return StreamingResponse(
        _chunks(stream, last - first + 1),
        status_code=206 if wanted is not None else 200,
        media_type=media_type,
        headers=headers,
        background=BackgroundTask(close),
    )


def _chunks(stream: BinaryIO, remaining: int):
    while remaining > 0:
        data = stream.read(min(CHUNK, remaining))
        if not data:
            return
        remaining -= len(data)
        yield data

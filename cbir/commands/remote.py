"""``cbir search`` through a running ``cbir serve``: the server has torch and the model loaded, so the
query costs an HTTP request instead of seconds of imports and model loading.

Standard library only (``urllib``), so that this path imports nothing heavy.
Any trouble reaching the server (none recorded, connection refused, a
refusal, an answer that is not search results) returns None and the command
searches in-process, as it would without a server.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Sequence

from cbir.server.address import running_server

VIDEO_KINDS = ("frame", "shot")  # a photo query on videos also lists moments, which only the in-process search makes
ANSWER_TIMEOUT_S = 30.0  # an image query waits for the network behind other queries
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server is local: never through a proxy


class ServedHit(dict):
    """One hit as the server sent it (``SearchResult.to_dict``), readable as attributes like a ``SearchResult``."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return dict(self)


def multipart(fields: Sequence[tuple[str, str]], file_field: str, file_name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    safe_name = file_name.encode("ascii", "replace").decode().replace('"', "_").replace("\r", "_").replace("\n", "_")
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{safe_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def search_through_server(
    collection: Path, image: Path, k: int, kinds: Sequence[str] | None, label: str | None
) -> tuple[str, list[ServedHit]] | None:
    """(server URL, hits) from the server running for ``collection``, or None to search in-process."""
    address = running_server(collection.expanduser().resolve())
    if address is None:
        return None
    if not kinds and not label and holds_videos(address.url) is not False:
        return None
    try:
        data = image.read_bytes()
    except OSError:
        return None  # the in-process search reports it
    fields = [("k", str(k)), *(("kind", kind) for kind in kinds or ()), *((("label", label),) if label else ())]
    body, content_type = multipart(fields, "image", image.name, data)
    request = urllib.request.Request(f"{address.url}/search", data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with DIRECT.open(request, timeout=ANSWER_TIMEOUT_S) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):  # refused, unreachable, timed out, an error status, not JSON
        return None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or not all(isinstance(hit, dict) for hit in results):
        return None
    return address.url, [ServedHit(hit) for hit in results]


def holds_videos(url: str) -> bool | None:
    """Whether the served collection holds video frames or shots (None: the server did not say)."""
    try:
        with DIRECT.open(f"{url}/info", timeout=ANSWER_TIMEOUT_S) as response:
            counts = json.loads(response.read()).get("by_kind")
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return None
    if not isinstance(counts, dict):
        return None
    return any(counts.get(kind) for kind in VIDEO_KINDS)

"""A lean load generator for the server benchmark: keep-alive HTTP/1.1 over asyncio streams.

Each request is encoded to bytes once, before the clock starts (a form, or a
multipart upload of a picture); sending it is one write, and reading the answer
is the status line, the headers up to ``Content-Length``, and that many bytes.
It spends far less of the shared cores per request than a general HTTP client,
so that the measurement is mostly the server's; it runs on uvloop when installed.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Coroutine, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")


def form_request(host: str, port: int, path: str, fields: dict) -> bytes:
    """A POST of ``fields`` as ``application/x-www-form-urlencoded``."""
    body = urlencode(fields).encode()
    return _request(host, port, path, "application/x-www-form-urlencoded", body)


def upload_request(host: str, port: int, path: str, field: str, filename: str, data: bytes, fields: dict) -> bytes:
    """A POST of a file in ``field`` and ``fields`` as ``multipart/form-data``."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return _request(host, port, path, f"multipart/form-data; boundary={boundary}", body)


def _request(host: str, port: int, path: str, content_type: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (it spends less per request than asyncio's own loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


class Connection:
    """One keep-alive connection; ``send`` gives the status and body of the answer."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise ConnectionError("an answer without Content-Length")
            return status, await reader.readexactly(length)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

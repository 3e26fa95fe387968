"""A short way through the app for the commonest cheap request: a search by item id sent as a plain form.

``POST /search`` with an ``application/x-www-form-urlencoded`` body holding
only ``item_id`` and ``k`` (digits, within the route's limits) is answered here,
skipping FastAPI's routing, dependencies and form handling, which cost more
than the search itself on a small collection, when the service can run the
search at once on the event loop (``CollectionService.search_item_now``).
Everything else, including every error, goes on to the ``/search`` route with
the body as it came, and is answered there as always; the answer is the same
JSON with the same headers either way (``cbir.server.routes.search_response``).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cbir.server.errors import ApiError
from cbir.server.routes import DEFAULT_K, MAX_ITEM_ID, search_response

MAX_QUICK_BODY = 256  # bytes: a longer form is not a plain search by item


class QuickItemSearch:
    """ASGI middleware answering plain searches by item itself; the app's service comes from ``app.state``."""

    def __init__(self, app: ASGIApp, path: str = "/search"):
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path and _plain_form(scope)):
            await self.app(scope, receive, send)
            return
        received, body = await _read_small_body(receive)
        query = _item_query(body) if body is not None else None
        if query is not None:
            service = scope["app"].state.service
            item_id, k = query
            if k <= service.settings.max_k:
                started = time.perf_counter()
                try:
                    results = service.search_item_now(item_id, k)
                except ApiError:  # the route gives the error its answer
                    results = None
                if results is not None:
                    answer = search_response(f"item:{item_id}", results, search=time.perf_counter() - started)
                    await answer(scope, receive, send)
                    return
        await self.app(scope, _replaying(received, receive), send)


def _plain_form(scope: Scope) -> bool:
    content_type = Headers(scope=scope).get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


async def _read_small_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The messages read, and the whole body, or ``None`` when it is longer than ``MAX_QUICK_BODY``
    (or the client went away): reading stops there, so that nothing large is held here."""
    received: list[Message] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        size += len(message.get("body", b""))
        if size > MAX_QUICK_BODY:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(part.get("body", b"") for part in received)


def _item_query(body: bytes) -> tuple[int, int] | None:
    """(item id, k) of a form holding ``item_id`` and at most ``k``, each once, both plain numbers in range."""
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    values = dict(fields)
    if len(values) != len(fields) or "item_id" not in values or not set(values) <= {"item_id", "k"}:
        return None
    item_id, k = values["item_id"], values.get("k", str(DEFAULT_K))
    if not (item_id.isdigit() and k.isdigit() and len(item_id) <= 19 and len(k) <= 9):
        return None
    item_id, k = int(item_id), int(k)
    return (item_id, k) if 1 <= item_id <= MAX_ITEM_ID and k >= 1 else None


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives the messages already read again first."""
    pending = list(received)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay

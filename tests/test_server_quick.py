"""The short way through for plain searches by item: it answers exactly as the route does, or steps aside."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cbir.server.app import create_app  # noqa: E402
from cbir.server.quick import MAX_QUICK_BODY, QuickItemSearch  # noqa: E402
from cbir.server.settings import ServerSettings  # noqa: E402
from tests.server_support import build_collection  # noqa: E402

SETTINGS = ServerSettings(max_k=50, refresh_interval=None)
FORM = b"application/x-www-form-urlencoded"
VOLATILE = {"date", "server-timing", "content-length"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(build_collection(tmp_path_factory.mktemp("quick")), settings=SETTINGS)


@pytest.fixture(scope="module")
def item_id(app) -> int:
    with app.state.service.reading() as collection:
        return int(collection.vectors()[0][0])


def test_a_plain_form_gets_the_same_answer_as_the_route(app, item_id):
    client = TestClient(app)
    plain = client.post("/search", data={"item_id": item_id, "k": 4})  # urlencoded: answered by the short way
    multipart = client.post("/search", files={"item_id": (None, str(item_id)), "k": (None, "4")})  # by the route
    assert plain.status_code == multipart.status_code == 200
    assert plain.json() == multipart.json() and plain.json()["results"][0]["item_id"] == item_id
    assert {k: v for k, v in plain.headers.items() if k not in VOLATILE} == {
        k: v for k, v in multipart.headers.items() if k not in VOLATILE
    }
    assert plain.headers["server-timing"].startswith("search;dur=")


class Fallback:
    """The app behind the middleware, standing in for the route: records each request's body, answers 299."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(app, body: bytes, content_type: bytes = FORM, method: str = "POST", chunk: int = 0) -> tuple[int, Fallback]:
    """Status of ``body`` sent (in chunks of ``chunk`` bytes if given) through the middleware, and its fallback."""
    fallback = Fallback()
    middleware = QuickItemSearch(fallback)
    parts = [body[start:start + chunk] for start in range(0, len(body), chunk)] if chunk and body else [body]
    messages = [{"type": "http.request", "body": part, "more_body": n < len(parts) - 1} for n, part in enumerate(parts)]
    scope = {"type": "http", "method": method, "path": "/search", "app": app, "headers": [(b"content-type", content_type)]}
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], fallback


def test_the_short_way_answers_only_plain_well_formed_searches(app, item_id):
    status, fallback = call(app, f"item_id={item_id}&k=3".encode(), chunk=5)
    assert status == 200 and fallback.bodies == []
    assert call(app, f"k=2&item_id={item_id}".encode())[0] == 200
    for body in (
        f"item_id={item_id}&k=3&kind=image",  # filters: the route's
        f"item_id={item_id}&item_id={item_id}",  # repeated
        f"item_id={item_id}&k=51",  # over max_k: the route refuses it
        "item_id=99999999&k=3",  # no such item: the route's 404
        "item_id=0", "item_id=-1", "item_id=1e3", "item_id=%201", "k=3", "",
        f"item_id={item_id}&k={'9' * 10}",
        f"item_id={item_id}&k=3&" + "x" * MAX_QUICK_BODY,  # too long to be a plain search
    ):
        status, fallback = call(app, body.encode(), chunk=7)
        assert status == 299 and fallback.bodies == [body.encode()], body  # passed on whole
    for content_type in (b"multipart/form-data; boundary=x", b"application/json"):
        assert call(app, f"item_id={item_id}".encode(), content_type)[0] == 299
    assert call(app, f"item_id={item_id}".encode(), method="PUT")[0] == 299


def test_the_short_way_never_waits_for_a_change(app, item_id):
    service = app.state.service
    writing, done = threading.Event(), threading.Event()

    def change():
        with service._lock.write():
            writing.set()
            done.wait(5)

    thread = threading.Thread(target=change, daemon=True)
    thread.start()
    assert writing.wait(5)
    try:
        assert service.search_item_now(item_id, 3) is None
        assert call(app, f"item_id={item_id}&k=3".encode())[0] == 299  # left to the route, which waits in a thread
    finally:
        done.set()
        thread.join(5)
    assert service.search_item_now(item_id, 3)[0].item_id == item_id


def test_searches_that_take_long_leave_the_event_loop(app, item_id, monkeypatch):
    from cbir.server import service as service_module

    service = app.state.service
    monkeypatch.setattr(service_module, "QUICK_SEARCH_S", 0.0)  # every search now counts as long
    service.search_item(item_id, 3)
    assert service.search_item_now(item_id, 3) is None
    response = TestClient(app).post("/search", data={"item_id": item_id, "k": 3})  # answered from the thread pool
    assert response.status_code == 200 and response.json()["results"][0]["item_id"] == item_id

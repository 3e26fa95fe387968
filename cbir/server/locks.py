"""A readers/writer lock: many searches at once, or one change to the collection."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator


class ReadWriteLock:
    """Shared reading, exclusive writing; a waiting writer holds back new readers so it cannot starve.

    Not re-entrant: a thread must not take it again while holding it.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            self._release_read()

    def try_read(self) -> contextlib.AbstractContextManager[None] | None:
        """The shared lock if it can be had without waiting (no change running or waiting), else ``None``."""
        with self._condition:
            if self._writing or self._writers_waiting:
                return None
            self._readers += 1
        return _Held(self._release_read)

    def _release_read(self) -> None:
        with self._condition:
            self._readers -= 1
            if self._readers == 0:
                self._condition.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._condition.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class _Held:
    """A lock already taken, released when the ``with`` block ends."""

    def __init__(self, release: Callable[[], None]):
        self._release = release

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._release()


@contextlib.contextmanager
def held_within(lock: threading.Lock | threading.Semaphore, seconds: float, busy: str) -> Iterator[None]:
    """Hold ``lock``, waiting at most ``seconds`` for it; past that, 503 with ``busy`` as the message."""
    from cbir.server.errors import ApiError

    if not lock.acquire(timeout=max(0.0, seconds)):
        raise ApiError(503, busy, {"Retry-After": "5"})
    try:
        yield
    finally:
        lock.release()

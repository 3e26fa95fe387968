"""Query pictures that arrive while the network is busy run together in its next forward pass.

No timer: a request that finds the network idle runs at once; those that
arrive meanwhile wait, and when the pass ends one of them takes every waiting
picture (up to ``max_batch``) into the next. Under load each pass serves
several requests, where one pass per request would queue them one by one;
alone, a request waits for nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


class QueueTimeout(Exception):
    """A picture waited longer than allowed for its turn."""


@dataclass(eq=False)
class _Ticket:
    image: Any
    vector: np.ndarray | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class EncodingQueue:
    """``encode(image)`` for many threads; ``encode_batch`` runs on one thread at a time, on a batch of them."""

    def __init__(self, encode_batch: Callable[[Sequence[Any]], np.ndarray], max_batch: int = 8):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.encode_batch = encode_batch
        self.max_batch = max_batch
        self.passes = 0  # batches run, and pictures encoded: their ratio is the mean batch size
        self.encoded = 0
        self._condition = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._running = False

    def encode(self, image: Any, wait: float) -> np.ndarray:
        """The descriptor of ``image``; ``QueueTimeout`` when its batch has not started within ``wait`` seconds."""
        ticket = _Ticket(image)
        deadline = time.monotonic() + wait
        with self._condition:
            self._waiting.append(ticket)
        while True:
            with self._condition:
                while self._running and not ticket.done.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 and ticket in self._waiting:
                        self._waiting.remove(ticket)
                        raise QueueTimeout(f"waited {wait:g} s for the network")
                    self._condition.wait(remaining if remaining > 0 else 0.1)
                if ticket.done.is_set():
                    break
                self._running = True
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            self._run(batch)
        if ticket.error is not None:
            raise ticket.error
        return ticket.vector

    def _run(self, batch: list[_Ticket]) -> None:
        try:
            vectors = self.encode_batch([ticket.image for ticket in batch])
            for ticket, vector in zip(batch, vectors):
                ticket.vector = vector
        except BaseException as error:  # every request of the batch gets the failure, none hangs
            for ticket in batch:
                ticket.error = error
        finally:
            with self._condition:
                self.passes += 1
                self.encoded += len(batch)
                self._running = False
                for ticket in batch:
                    ticket.done.set()
                self._condition.notify_all()

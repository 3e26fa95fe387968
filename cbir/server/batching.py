"""Query pictures that arrive while the network is busy run together in its next forward pass.

One thread owns the network and runs every pass (torch's OpenMP thread team
belongs to the calling thread: passes from many request threads in turn ran
slower). No timer: a picture that finds the network idle runs at once;
those that arrive meanwhile wait, and when the pass ends the next takes every
waiting picture (up to ``max_batch``). Under load each pass serves several
requests; alone, a request waits for nothing.
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
    taken: bool = False
    vector: np.ndarray | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class EncodingQueue:
    """``encode(image)`` for many threads; ``encode_batch`` runs on the queue's own thread, on a batch of them."""

    def __init__(self, encode_batch: Callable[[Sequence[Any]], np.ndarray], max_batch: int = 8):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.encode_batch = encode_batch
        self.max_batch = max_batch
        self.passes = 0  # batches run, and pictures encoded: their ratio is the mean batch size
        self.encoded = 0
        self._condition = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="cbir-encoder", daemon=True)
        self._thread.start()

    def encode(self, image: Any, wait: float) -> np.ndarray:
        """The descriptor of ``image``; ``QueueTimeout`` when its batch has not started within ``wait`` seconds."""
        ticket = _Ticket(image)
        deadline = time.monotonic() + wait
        with self._condition:
            if self._closed:
                raise QueueTimeout("the network is shut down")
            self._waiting.append(ticket)
            self._condition.notify_all()
            while not ticket.taken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._waiting.remove(ticket)
                    raise QueueTimeout(f"waited {wait:g} s for the network")
                self._condition.wait(remaining)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.vector

    def close(self) -> None:
        """Finish the pictures already waiting, then stop the thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join()

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._closed:
                    self._condition.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                for ticket in batch:
                    ticket.taken = True
                self._condition.notify_all()
            self._run(batch)

    def _run(self, batch: list[_Ticket]) -> None:
        try:
            vectors = self.encode_batch([ticket.image for ticket in batch])
            for ticket, vector in zip(batch, vectors):
                ticket.vector = vector
        except Exception as error:  # every request of the batch gets the failure, none hangs
            for ticket in batch:
                ticket.error = error
        finally:
            with self._condition:
                self.passes += 1
                self.encoded += len(batch)
            for ticket in batch:
                ticket.done.set()

"""Query pictures that arrive while the network is busy run together in its next forward pass.

Worker threads own the network and run every pass (torch's OpenMP thread
team belongs to the calling thread: passes from many request threads in turn
ran slower). No timer: a picture that finds a worker idle runs at once; those
that arrive meanwhile wait, and when a pass ends its worker takes every
waiting picture (up to ``max_batch``). Under load each pass serves several
requests; alone, a request waits for nothing.

The cores are shared among the passes running at once: a pass alone uses
``threads`` OpenMP threads (all cores, the quickest answer to a lone request);
with ``workers`` passes running side by side, each uses its share, one core
each on a 2-core machine, which keeps the cores busy without OpenMP teams
waiting on each other while request threads decode the next pictures.
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
    """``encode(image)`` for many threads; ``encode_batch(images, threads)`` runs on the queue's own worker
    threads, on a batch of them, with the number of OpenMP threads that pass should use."""

    def __init__(self, encode_batch: Callable[[Sequence[Any], int], np.ndarray], max_batch: int = 8, workers: int = 1, threads: int = 1):
        if max_batch < 1 or workers < 1 or threads < 1:
            raise ValueError("max_batch, workers and threads must be at least 1")
        self.encode_batch = encode_batch
        self.max_batch = max_batch
        self.threads = threads
        self.passes = 0  # batches run, and pictures encoded: their ratio is the mean batch size
        self.encoded = 0
        self._condition = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._running = 0  # passes under way
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name="cbir-encoder", daemon=True) for _ in range(workers)]
        for worker in self._workers:
            worker.start()

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
        """Finish the pictures already waiting, then stop the workers."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        for worker in self._workers:
            worker.join()

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
                self._running += 1
                threads = max(1, self.threads // self._running)
                self._condition.notify_all()
            self._run(batch, threads)

    def _run(self, batch: list[_Ticket], threads: int) -> None:
        try:
            vectors = self.encode_batch([ticket.image for ticket in batch], threads)
            for ticket, vector in zip(batch, vectors):
                ticket.vector = vector
        except Exception as error:  # every request of the batch gets the failure, none hangs
            for ticket in batch:
                ticket.error = error
        finally:
            with self._condition:
                self._running -= 1
                self.passes += 1
                self.encoded += len(batch)
            for ticket in batch:
                ticket.done.set()

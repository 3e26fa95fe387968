"""Decoding ahead of the network in a thread: same batches in the same order, errors raised, an early stop ends it."""

from __future__ import annotations

import threading

import pytest

from cbir.pipelines.decoding import ahead


def test_batches_come_in_order() -> None:
    assert list(ahead(iter([[1], [2, 3], [4]]))) == [[1], [2, 3], [4]]


def test_an_error_in_the_thread_reaches_the_consumer() -> None:
    def failing():
        yield [1]
        raise OSError("disk gone")

    made = ahead(failing())
    assert next(made) == [1]
    with pytest.raises(OSError, match="disk gone"):
        next(made)


def test_a_consumer_that_stops_early_stops_the_thread() -> None:
    produced = []

    def endless():
        number = 0
        while True:
            produced.append(number)
            yield [number]
            number += 1

    made = ahead(endless(), depth=1)
    assert next(made) == [0]
    made.close()
    assert not any(thread.name == "cbir-decoding" for thread in threading.enumerate())
    assert len(produced) <= 3

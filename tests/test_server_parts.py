"""The server's small parts: the readers/writer lock and upload checks."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from cbir.server.errors import ApiError  # noqa: E402
from cbir.server.locks import ReadWriteLock  # noqa: E402
from cbir.server.uploads import probe, read_upload, safe_stem, store_upload  # noqa: E402


def run(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_readers_share_the_lock():
    lock = ReadWriteLock()
    both_inside = threading.Barrier(2, timeout=5)

    def reader():
        with lock.read():
            both_inside.wait()

    threads = [run(reader), run(reader)]
    for thread in threads:
        thread.join(5)
    assert not both_inside.broken and not any(thread.is_alive() for thread in threads)


def test_a_writer_excludes_readers_and_is_not_starved():
    lock = ReadWriteLock()
    events: list[str] = []
    first_reader_in, release_first_reader = threading.Event(), threading.Event()

    def first_reader():
        with lock.read():
            first_reader_in.set()
            release_first_reader.wait(5)
            events.append("reader 1 out")

    def writer():
        with lock.write():
            events.append("writer in")
            time.sleep(0.05)
            events.append("writer out")

    def second_reader():
        with lock.read():
            events.append("reader 2 in")

    threads = [run(first_reader)]
    assert first_reader_in.wait(5)
    threads.append(run(writer))
    time.sleep(0.1)  # the writer now waits for reader 1
    threads.append(run(second_reader))
    time.sleep(0.1)  # reader 2 must queue behind the waiting writer
    assert events == []
    release_first_reader.set()
    for thread in threads:
        thread.join(5)
    assert events == ["reader 1 out", "writer in", "writer out", "reader 2 in"]


def test_try_read_takes_the_lock_only_when_no_writer_holds_or_waits():
    lock = ReadWriteLock()
    with lock.read():
        held = lock.try_read()  # readers share
        assert held is not None
        with held:
            pass
    writer_in, release_writer = threading.Event(), threading.Event()

    def writer():
        with lock.write():
            writer_in.set()
            release_writer.wait(5)

    thread = run(writer)
    assert writer_in.wait(5)
    assert lock.try_read() is None
    release_writer.set()
    thread.join(5)
    held = lock.try_read()
    assert held is not None
    with held:
        waiting = run(lambda: lock.write().__enter__())  # a writer now waits for this reader
        time.sleep(0.1)
        assert lock.try_read() is None  # so new readers queue behind it
    waiting.join(5)
    assert not waiting.is_alive()


def png(size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("given", "stem"),
    [
        ("../../etc/passwd", "passwd"),
        ("my cat!.jpg", "my-cat"),
        ("C:\\Users\\me\\holiday photo.png", "holiday-photo"),
        ("....", "upload"),
        ("", "upload"),
        ("résumé.jpg", "résumé"),
        ("a\x00b;c|d.png", "a-b-c-d"),
        ("a" * 300 + ".png", "a" * 60),
    ],
)
def test_safe_stem(given, stem):
    assert safe_stem(given) == stem


def test_uploads_are_stored_by_content_inside_the_folder(tmp_path):
    upload = read_upload(png(), "../../../outside.png", max_bytes=10**6, max_pixels=10**6)
    first = store_upload(upload, tmp_path / "uploads")
    assert first.parent.parent == tmp_path / "uploads" and first.name == "outside.png"
    assert first.read_bytes() == png()
    assert store_upload(upload, tmp_path / "uploads") == first
    other = read_upload(png((40, 30)), "outside.png", max_bytes=10**6, max_pixels=10**6)
    assert store_upload(other, tmp_path / "uploads").parent != first.parent


def test_upload_checks():
    assert probe(png(), max_pixels=10**6) == ("PNG", 32, 24)
    with pytest.raises(ApiError) as refused:
        probe(png((100, 100)), max_pixels=9999)
    assert refused.value.status == 413 and "100x100" in refused.value.message
    with pytest.raises(ApiError) as refused:
        read_upload(png(), "a.png", max_bytes=10, max_pixels=10**6)
    assert refused.value.status == 413
    with pytest.raises(ApiError) as refused:
        probe(b"GIF89a but not really", max_pixels=10**6)
    assert refused.value.status == 415

"""Limits and options of the search server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """What the server accepts and how it behaves.

    ``refresh_interval`` is how often (seconds) the server checks whether
    another process changed the collection; ``None`` turns the check off.
    ``write_wait`` is how long an upload waits for another process's write
    lock on the collection before giving up with 503. ``search_threads`` is
    how many OpenMP threads one FAISS search may use: one serves concurrent
    requests far better than several contending for each small search.

    ``max_decodes`` uploaded pictures are decoded at once (each may take
    width x height x 4 bytes while it is decoded); a request waits at most
    ``request_wait`` seconds for its turn to decode or to run the network,
    then gets 503. At most ``max_writers`` uploads or removals are under way;
    more get 503 at once, so that changes never take the threads searches
    need. Query pictures of concurrent requests share a forward pass, at most
    ``max_query_batch`` at once (passes run side by side, one per core at most). ``allowed_hosts``, when set, are the only Host names the server
    answers to (against DNS rebinding); ``None`` accepts any.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_k: int = 200
    thumbnail_size: int = 256
    max_thumbnail_size: int = 1024
    thumbnail_cache_items: int = 2048
    refresh_interval: float | None = 2.0
    write_wait: float = 5.0
    search_threads: int = 1
    cors_origins: tuple[str, ...] = ()
    max_decodes: int = 2
    request_wait: float = 10.0
    max_writers: int = 2
    max_query_batch: int = 8
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1024:
            raise ValueError("max_upload_bytes must be at least 1024")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be positive")
        if self.max_k < 1:
            raise ValueError("max_k must be at least 1")
        if self.max_decodes < 1 or self.max_writers < 1 or self.max_query_batch < 1:
            raise ValueError("max_decodes, max_writers and max_query_batch must be at least 1")
        if self.search_threads < 1:
            raise ValueError("search_threads must be at least 1")
        if not 16 <= self.thumbnail_size <= self.max_thumbnail_size:
            raise ValueError("thumbnail_size must lie between 16 and max_thumbnail_size")

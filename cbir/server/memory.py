"""Giving the memory of decoded pictures back to the system once they are freed.

A large upload is decoded into hundreds of megabytes. glibc raises its
threshold for serving allocations from their own mappings each time such a
mapping is freed, so later large buffers come from heap arenas (one per
thread) and stay with the process after they are freed: under concurrent
requests the server kept gigabytes. Fixing the threshold keeps every large
buffer in its own mapping, which is unmapped when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
LARGE_BUFFER = 8 << 20


def return_freed_memory(threshold: int = LARGE_BUFFER) -> bool:
    """Serve allocations of ``threshold`` bytes or more from mappings of their own; False where not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, threshold))

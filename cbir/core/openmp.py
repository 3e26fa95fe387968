"""cbir's OpenMP defaults, set in the environment before torch or FAISS load their OpenMP runtime.

OpenMP reads its settings once, when the library loads. By default GNU
OpenMP's threads spin for a while after each parallel operation, waiting
for the next: on a machine where other programs also want the cores, the
network's threads then spin against each other and against them. Passive
waiting (``OMP_WAIT_POLICY=PASSIVE``) makes a waiting thread sleep at once;
on 2 shared cores at load average 10-12 it ran the forward pass 3.58x and the
whole pipeline 4.98x as fast (bench/results/speed.md, "Threads and
waiting"). The thread count stays torch's (one per core): with passive
waiting, one thread ran the forward pass at 12.6 images/s against 14.7 for
two under that load.

A value the user has set wins; ``CBIR_OMP_DEFAULTS=0`` leaves the library
defaults alone. A program that imports torch before cbir keeps the settings
torch started with.
"""

from __future__ import annotations

import os
from typing import MutableMapping

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
SWITCH = "CBIR_OMP_DEFAULTS"


def apply_defaults(environment: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each of ``DEFAULTS`` the environment does not set already; returns those it set."""
    if environment.get(SWITCH, "1") == "0":
        return {}
    chosen = {name: value for name, value in DEFAULTS.items() if name not in environment}
    environment.update(chosen)
    return chosen

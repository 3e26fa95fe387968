"""What every benchmark writes beside its numbers: the command, the machine, where the data is."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results"


def default_data() -> Path:
    """``$CBIR_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("CBIR_SHARED_DATA") or REPOSITORY.parent / "shared" / "data")


def command_line() -> str:
    """The command that is running, as it would be typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    parts = script.parent.relative_to(REPOSITORY).parts + (() if script.stem == "__main__" else (script.stem,))
    module = ".".join(parts)
    return " ".join(["python -m", module, *map(shlex.quote, sys.argv[1:])])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions(packages: tuple[str, ...] = ("torch", "timm", "faiss-cpu", "numpy", "pillow")) -> list[str]:
    """``NAME VERSION`` of each installed package of ``packages``."""
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return versions


def memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def accelerator() -> str:
    """The GPU torch would use, or that none is used."""
    import torch

    return f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU used"


def machine_description() -> list[str]:
    """Markdown bullet lines: CPU, cores, memory, library versions."""
    import torch

    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}; {accelerator()}",
        f"- memory: {memory_gib():.0f} GiB; {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- libraries: {', '.join(library_versions())}",
    ]


def machine_summary(extra_packages: tuple[str, ...] = ()) -> str:
    """The machine in one sentence, for results pages that describe it inline."""
    import torch

    return (
        f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores available, {memory_gib():.0f} GiB RAM, {accelerator()}; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch threads {torch.get_num_threads()}; "
        + ", ".join(library_versions(("torch", "numpy", *extra_packages)))
    )


class RunClock:
    """Wall time and the machine's load average over a benchmark run (other work on the machine skews timings)."""

    def __init__(self):
        self.started = time.time()
        self.load_before = os.getloadavg()[0]

    def summary(self) -> str:
        minutes = (time.time() - self.started) / 60
        return (
            f"- run: {time.strftime('%Y-%m-%d %H:%M', time.localtime(self.started))}, {minutes:.1f} min; "
            f"1-minute load average {self.load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
            f"(on {os.cpu_count()} cores: above that, other processes were competing for the CPU)"
        )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)

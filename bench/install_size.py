"""Disk size of a virtual environment, split into PyTorch's CUDA stack and the rest.

    python -m bench.install_size VENV [VENV ...] [--label TEXT ...]

Prints one Markdown table row per environment (append them to ``bench/results/install.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Distributions that PyPI's Linux PyTorch wheels pull in for CUDA, by their folder in site-packages.
CUDA_STACK = ("nvidia", "triton", "cuda", "cusparselt")


def folder_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


def split_sizes(venv: Path) -> dict[str, int]:
    """Bytes of the whole environment, of torch itself, and of its CUDA stack."""
    site = next(venv.glob("lib/python3*/site-packages"))
    sizes = {"total": folder_bytes(venv), "torch": 0, "cuda": 0}
    for entry in site.iterdir():
        if entry.is_dir() and not entry.name.endswith(".dist-info"):
            if entry.name == "torch":
                sizes["torch"] += folder_bytes(entry)
            elif entry.name.lower().startswith(CUDA_STACK):
                sizes["cuda"] += folder_bytes(entry)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venvs", nargs="+", type=Path)
    parser.add_argument("--label", action="append", default=[], help="One label per environment, in order.")
    arguments = parser.parse_args()
    labels = arguments.label + [str(venv) for venv in arguments.venvs[len(arguments.label):]]
    print("| environment | total | torch | CUDA stack (nvidia-*, triton, cuda-*) | the rest |")
    print("| --- | --- | --- | --- | --- |")
    for label, venv in zip(labels, arguments.venvs):
        sizes = split_sizes(venv)
        rest = sizes["total"] - sizes["torch"] - sizes["cuda"]
        cells = [f"{sizes[key] / 2**30:.2f} GiB" for key in ("total", "torch", "cuda")] + [f"{rest / 2**30:.2f} GiB"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

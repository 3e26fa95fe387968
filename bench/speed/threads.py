"""The network's thread count and OpenMP wait policy, each combination in fresh processes.

OpenMP reads ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` once, when torch
loads it, so every combination runs in its own process; the combinations
alternate round by round so that a burst of other load hits all alike, and
the median of the rounds is kept. Each process times the forward pass alone
on ready tensors and the whole pipeline (decoding workers as the default
picks them for that thread count).

    python -m bench.speed.threads [--data DIR] [--images 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import REPOSITORY, default_data

# (label, environment): "library default" leaves both unset, as torch would run without cbir's defaults.
COMBINATIONS = (
    ("2 threads, library default wait", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": None}),
    ("2 threads, PASSIVE", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}),
    ("1 thread, library default wait", {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": None}),
    ("1 thread, PASSIVE", {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}),
)


def child(data: Path, count: int) -> dict:
    """images/s of the forward pass alone and of the pipeline, in this process."""
    import torch

    from bench.speed.__main__ import ceiling_rate, corel_sample, pipeline_rate, ready_tensors
    from cbir.encoders.encoder import Encoder, EncoderSpec

    encoder = Encoder(EncoderSpec()).for_inference()
    paths = corel_sample(data, count)
    tensors = ready_tensors(encoder, paths)
    ceiling_rate(encoder, tensors[:8])  # warm-up
    return {
        "forward": ceiling_rate(encoder, tensors),
        "pipeline": pipeline_rate(encoder, paths),
        "threads": torch.get_num_threads(),
        "wait": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }


def run_combination(environment: dict[str, str | None], data: Path, count: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in environment}
    env.update({key: value for key, value in environment.items() if value is not None})
    env["CBIR_OMP_DEFAULTS"] = "0"  # exactly the given settings, not cbir's defaults
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.speed.threads", "--child", "--data", str(data), "--images", str(count)],
        capture_output=True, text=True, env=env, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-2000:])
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["load"] = os.getloadavg()[0]
    return result


def measure(data: Path, count: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per combination: median forward and pipeline images/s over ``rounds``, and the load averages seen."""
    runs: dict[str, list[dict]] = {label: [] for label, _ in COMBINATIONS}
    for _ in range(rounds):
        for label, environment in COMBINATIONS:
            runs[label].append(run_combination(environment, data, count))
    return {
        label: {
            "forward": statistics.median(run["forward"] for run in found),
            "pipeline": statistics.median(run["pipeline"] for run in found),
            "load_min": min(run["load"] for run in found),
            "load_max": max(run["load"] for run in found),
        }
        for label, found in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.data, args.images)))
        return 0
    print(json.dumps(measure(args.data, args.images, args.rounds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

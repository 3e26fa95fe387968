"""cbir's OpenMP defaults reach the OpenMP runtime torch loads, and never override the user's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cbir.core.openmp import apply_defaults

REPOSITORY = Path(__file__).resolve().parents[1]


def runtime_wait_policy(**environment: str) -> str:
    """The wait policy GNU OpenMP reports when the command line module and then torch are imported."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OMP_", "CBIR_OMP"))}
    env.update(environment, OMP_DISPLAY_ENV="TRUE", PYTHONPATH=str(REPOSITORY))
    completed = subprocess.run(
        [sys.executable, "-c", "import cbir.cli, torch; torch.ones(2).sum()"], env=env, capture_output=True, text=True, check=True
    )
    return next(line.split("=")[1].strip(" '") for line in completed.stderr.splitlines() if "OMP_WAIT_POLICY" in line)


def test_the_command_line_starts_torch_with_passive_waiting():
    assert runtime_wait_policy() == "PASSIVE"


def test_the_users_setting_wins_and_the_defaults_can_be_turned_off():
    assert runtime_wait_policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert apply_defaults({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert apply_defaults({"CBIR_OMP_DEFAULTS": "0"}) == {}
    environment: dict[str, str] = {}
    assert apply_defaults(environment) == {"OMP_WAIT_POLICY": "PASSIVE"} and environment["OMP_WAIT_POLICY"] == "PASSIVE"

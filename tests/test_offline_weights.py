"""Backbones whose weights are not on this machine fail at once, without trying the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, time
from cbir.encoders.backbones import WeightsUnavailableError, create_backbone
started = time.perf_counter()
try:
    create_backbone(sys.argv[1])
    outcome = "loaded"
except WeightsUnavailableError as error:
    outcome = str(error)
print(json.dumps({"seconds": time.perf_counter() - started, "outcome": outcome}))
"""


def _probe(name: str, home: Path) -> dict:
    """Build ``name`` in a fresh process with empty caches and the hub's offline switch unset."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TORCH_HOME"))}
    environment.update(HF_HOME=str(home / "hf"), TORCH_HOME=str(home / "torch"), PYTHONPATH=str(REPOSITORY))
    done = subprocess.run([sys.executable, "-c", PROBE, name], env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_timm_weights_missing_from_the_cache_fail_within_seconds(tmp_path):
    """Before, the hub was retried 10 times (57 s) before the message; the bound is generous for a busy machine."""
    result = _probe("resnet50", tmp_path)
    assert "no pretrained weights for 'resnet50' in the local cache" in result["outcome"]
    assert "--weights FILE" in result["outcome"]
    assert result["seconds"] < 15


def test_torchvision_weights_missing_from_the_cache_fail_within_seconds(tmp_path):
    result = _probe("torchvision/resnet18", tmp_path)
    assert "torch hub cache" in result["outcome"] and "--weights FILE" in result["outcome"]
    assert result["seconds"] < 15


def test_timm_weights_in_the_hub_cache_are_found_offline(tmp_path, monkeypatch):
    """A file laid out as the Hugging Face cache keeps it is used, with no network access."""
    import timm
    import torch
    from huggingface_hub import constants

    from cbir.encoders.backbones import _cached_timm_weights, create_backbone

    snapshot = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0123abcd")
    reference = timm.create_model("resnet18", pretrained=False)
    torch.save(reference.state_dict(), snapshot / "pytorch_model.bin")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert _cached_timm_weights("resnet18") == snapshot / "pytorch_model.bin"
    backbone, _ = create_backbone("resnet18")
    assert torch.equal(dict(backbone.body.named_parameters())["conv1.weight"], reference.conv1.weight)

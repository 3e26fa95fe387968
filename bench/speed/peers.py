"""A peer on the same network: imagededup's CNN encoder (MobileNetV3-small) against
``cbir index --backbone torchvision/mobilenet_v3_small`` on the same photos with the same weights file.

Each run is a whole fresh process (start-up, imports, model, every photo), as a
user runs it; the tools take turns round by round and the median is kept.
The network's weights do not change its speed: without the pretrained file in
the torch hub cache, both load one file of random weights of the right
architecture. imagededup runs as installed (its defaults: batches of 64,
224x224 crops, decoding in the main process); a second imagededup row runs
it with ``OMP_WAIT_POLICY=PASSIVE``, the setting cbir makes by default, to
show how much of the difference that setting is. Needs the ``bench`` extra
(``pip install 'cbir[bench]'``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPOSITORY

IMAGEDEDUP = """
import sys, torch, torchvision
from imagededup.methods import CNN
from imagededup.utils.models import CustomModel, MobilenetV3
weights, folder = sys.argv[1], sys.argv[2]
network = torchvision.models.mobilenet_v3_small(weights=None)
network.load_state_dict(torch.load(weights))
class Sliced(torch.nn.Module):  # imagededup's MobilenetV3, with these weights instead of its download
    def __init__(self):
        super().__init__()
        self.mobilenet_gap_op = torch.nn.Sequential(network.features, network.avgpool)
    def forward(self, x):
        return self.mobilenet_gap_op(x).squeeze(dim=3).squeeze(dim=2)
model = CustomModel(model=Sliced().eval(), transform=MobilenetV3.transform, name="mobilenet_v3_small, given weights")
encodings = CNN(verbose=False, model_config=model).encode_images(image_dir=folder)
assert len(encodings) == int(sys.argv[3]), len(encodings)
"""


def weights_file(folder: Path) -> Path:
    """The pretrained MobileNetV3-small file from the torch hub cache, else random weights of its architecture."""
    import torch
    import torchvision

    from cbir.encoders.backbones import _torch_hub_checkpoints

    cached = _torch_hub_checkpoints() / Path(torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url).name
    if cached.is_file():
        return cached
    torch.manual_seed(0)
    target = folder / "mobilenet_v3_small_random.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), target)
    return target


def runners(photos: Path, weights: Path, count: int, work: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Command and extra environment of each contender."""
    cbir = [sys.executable, "-m", "cbir.cli", "index", str(photos), "-c", str(work / "collection"),
            "--backbone", "torchvision/mobilenet_v3_small", "--weights", str(weights), "--json"]
    peer = [sys.executable, "-c", IMAGEDEDUP, str(weights), str(photos), str(count)]
    return {
        "cbir index (defaults)": (cbir, {}),
        "imagededup CNN (as installed)": (peer, {}),
        "imagededup CNN, OMP_WAIT_POLICY=PASSIVE": (peer, {"OMP_WAIT_POLICY": "PASSIVE"}),
    }


def measure(paths: list[Path], rounds: int) -> tuple[dict[str, float], str]:
    """Median whole-process seconds of each contender over ``rounds`` alternating rounds, and the weights used."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        photos = work / "photos"
        photos.mkdir()
        for path in paths:
            shutil.copy(path, photos / path.name)
        weights = weights_file(work)
        env = {key: value for key, value in os.environ.items() if not key.startswith("OMP_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
        seconds: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, (command, extra) in runners(photos, weights, len(paths), work).items():
                shutil.rmtree(work / "collection", ignore_errors=True)
                started = time.perf_counter()
                completed = subprocess.run(command, env={**env, **extra}, capture_output=True, text=True)
                if completed.returncode != 0:
                    raise RuntimeError(f"{name} failed: {completed.stderr[-2000:]}")
                seconds.setdefault(name, []).append(time.perf_counter() - started)
        kind = "pretrained (torch hub cache)" if "random" not in weights.name else "random, seed 0"
    return {name: statistics.median(values) for name, values in seconds.items()}, kind


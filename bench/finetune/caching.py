"""Images/s of caching the frozen stages for fine-tuning: the former way and the current one, on the same images.

Before: each image decoded to a float tensor, the frozen stages run as
trained (batch norms unfolded). Now (``cbir.training.inputs.CachedFeatures``):
uint8 pixels, one normalisation per same-shaped group, the frozen stages
rewritten for inference (``cbir.encoders.fusion``). For scale, the image
pipeline's rate with the whole fused network (``cbir.pipelines.image.extract``).
The two caches must agree (largest difference relative to the largest feature).

    PYTHONPATH=$PWD python -m bench.finetune.caching --data ../shared/data [--images 24] [--train-layers 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS, command_line, default_data, machine_summary
from cbir.encoders.encoder import Encoder, EncoderSpec, image_to_tensor, resized_size, shared_encoder
from cbir.io.images import load_image
from cbir.pipelines.batching import group_by_shape
from cbir.pipelines.image import extract
from cbir.progress import console, progress_bar
from cbir.training.inputs import CachedFeatures
from cbir.training.network import TrainableEncoder


@torch.no_grad()
def former_cache(network: TrainableEncoder, paths: list[Path], batch_size: int = 32) -> dict[int, torch.Tensor]:
    """The former recipe: float tensors per image, the unfused frozen stages."""
    encoder, store = network.encoder, {}
    with progress_bar("former cache") as update:
        for start in range(0, len(paths), batch_size):
            tensors = []
            for path in paths[start : start + batch_size]:
                image = load_image(path, min_side=encoder.spec.image_size)
                size = resized_size(*image.size, encoder.spec.image_size, encoder.spec.max_aspect)
                tensors.append(image_to_tensor(image, size, encoder.input_config))
            for positions, stacked in group_by_shape(tensors):
                for position, feature in zip(positions, network.bottom_features(stacked).to(torch.float16)):
                    store[start + int(position)] = feature
            update(min(start + batch_size, len(paths)), len(paths))
    return store


def timed(label: str, run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    console.print(f"{label}: {seconds:.1f} s")
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--train-layers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "finetune-caching.md")
    options = parser.parse_args()
    paths = sorted((options.data / "voc_dev" / "JPEGImages").glob("*.jpg"))[: options.images]
    network = TrainableEncoder(Encoder(EncoderSpec(pooling="gem")), options.train_layers)
    load = os.getloadavg()
    now = lambda: CachedFeatures(network, paths, torch.device("cpu"), None).build(np.arange(len(paths)))  # noqa: E731
    former_cache(network, paths[:2]), CachedFeatures(network, paths[:2], torch.device("cpu"), None).build(np.arange(2))  # warm-up
    seconds = {"former": [], "current": []}
    for name in ("former", "current", "current", "former"):  # ABBA: drifting load weighs on both alike
        seconds[name].append(timed(name, (lambda: former_cache(network, paths)) if name == "former" else now)[0])
    former_seconds, now_seconds = np.mean(seconds["former"]), np.mean(seconds["current"])
    former = former_cache(network, paths[:8])
    cache = CachedFeatures(network, paths[:8], torch.device("cpu"), None)
    cache.build(np.arange(8))
    encoder = shared_encoder(EncoderSpec(pooling="gem"))
    list(extract(encoder, paths[:2]))
    pipeline_seconds, _ = timed("pipeline", lambda: list(extract(encoder, paths)))
    load = [max(a, b) for a, b in zip(load, os.getloadavg())]
    difference = max(float((former[i].float() - cache.views[0][i].float()).abs().max()) for i in former)
    scale = max(float(former[i].float().abs().max()) for i in former)
    rate = lambda seconds: len(paths) / seconds  # noqa: E731
    lines = [
        "# Fine-tuning: caching the frozen stages",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Machine: {machine_summary()}. Date: {time.strftime('%Y-%m-%d %H:%M')}. Load average (1, 5, 15 min; the larger "
        f"of start and end): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}.",
        "",
        f"The first {len(paths)} photos of `voc_dev` (500 x 375 or so), short side 224; frozen stages = all but the top "
        f"{options.train_layers} of EfficientNet-Lite0. In one run, on the same images, after a warm-up; each cache timed twice "
        "(former, current, current, former) and averaged:",
        "",
        "| path | images/s |",
        "|---|---|",
        f"| former cache (float tensors per image, unfused frozen stages) | {rate(former_seconds):.2f} |",
        f"| current cache (uint8 pixels, grouped normalisation, fused frozen stages) | {rate(now_seconds):.2f} |",
        f"| image pipeline, whole fused network (for scale) | {rate(pipeline_seconds):.2f} |",
        "",
        f"Current over former: {former_seconds / now_seconds:.2f}x. Largest difference between the two caches: "
        f"{difference / scale:.1e} of the largest feature.",
    ]
    options.out.write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Reduced precision: each precision's speed against fp32 (same run, taking turns, median of the rounds)
and what it costs in retrieval quality on Corel-1k and UKBench.

Besides the precisions a collection can choose (``cbir index --precision``),
the fp32 network run by onnxruntime instead of torch is timed on the same
tensors, with the largest difference of its descriptors from torch's.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from cbir.encoders.encoder import Encoder, EncoderSpec
from cbir.encoders.precision import OnnxBackbone, export_onnx, native_bf16
from cbir.evaluation import protocols
from cbir.evaluation.benchmark import evaluate
from cbir.evaluation.descriptors import EncoderChoice
from cbir.progress import console

PRECISIONS = ("fp32", "bf16", "int8")
ONNX_FP32 = "fp32, onnxruntime"


def onnxruntime_fp32(spec: EncoderSpec, folder: Path) -> Encoder:
    """The fp32 encoder with its backbone exported to ONNX and run by onnxruntime."""
    encoder = Encoder(spec)
    export_onnx(encoder.backbone, folder / "fp32.onnx")
    encoder.backbone = OnnxBackbone(folder / "fp32.onnx", encoder.backbone.channels)
    encoder.inference_only = True
    return encoder


@torch.inference_mode()
def descriptors(encoder: Encoder, tensors: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([encoder(torch.stack(tensors[i : i + 8])).numpy() for i in range(0, len(tensors), 8)])


def measure(data: Path, count: int, rounds: int) -> dict[str, dict]:
    """For each precision (and onnxruntime fp32): median images/s of the forward pass and of the pipeline, the
    largest descriptor difference from fp32 and, for the precisions, Corel-1k mAP and UKBench N-S score and mAP."""
    from bench.speed.__main__ import ceiling_rate, corel_sample, pipeline_rate, ready_tensors

    spec = EncoderSpec()
    paths = corel_sample(data, count)
    with tempfile.TemporaryDirectory() as folder:
        encoders = {name: Encoder(EncoderSpec(precision=name)).for_inference() for name in PRECISIONS}
        encoders[ONNX_FP32] = onnxruntime_fp32(spec, Path(folder))
        tensors = ready_tensors(encoders["fp32"], paths)
        same_shape = [t for t in tensors if t.shape == tensors[0].shape]
        reference = descriptors(encoders["fp32"], same_shape)
        found: dict[str, dict] = {}
        for name, encoder in encoders.items():
            vectors = descriptors(encoder, same_shape)
            found[name] = {
                "max_difference": float(np.abs(vectors - reference).max()),
                "min_cosine": float((vectors * reference).sum(axis=1).min()),
                "forward": [], "pipeline": [],
            }
            ceiling_rate(encoder, tensors[:16])  # warm-up
        for round_ in range(rounds):
            console.print(f"precision: round {round_ + 1} of {rounds}")
            for name, encoder in encoders.items():
                found[name]["forward"].append(ceiling_rate(encoder, tensors))
                found[name]["pipeline"].append(pipeline_rate(encoder, paths))
        for values in found.values():
            values["forward"] = statistics.median(values["forward"])
            values["pipeline"] = statistics.median(values["pipeline"])
        for name in PRECISIONS:
            console.print(f"precision: quality at {name}")
            choice = EncoderChoice.of(EncoderSpec(precision=name))
            cache = None if name == "fp32" else Path(folder) / "descriptors"  # fp32: the shared cache, same vectors
            corel = evaluate(protocols.labeled(data / "corel1k", data / "corel1k" / "labels.csv", ks=(10,)), choice, cache_dir=cache)
            ukbench = evaluate(protocols.ukbench(data / "ukbench_subset" / "full"), choice, cache_dir=cache)
            found[name].update({"corel_map": corel.metrics["mAP"], "ukbench_ns": ukbench.metrics["N-S"], "ukbench_map": ukbench.metrics["mAP"]})
    found["fp32"]["native_bf16"] = native_bf16()
    return found

"""Reduced-precision inference of a backbone: ``fp32`` (as trained), ``bf16`` or ``int8``.

* ``bf16``: the backbone, rewritten for inference, with its weights and
  activations in bfloat16 (oneDNN kernels; fast where the CPU has native
  bfloat16, AVX512-BF16 or AMX, emulated and slower elsewhere). Features
  come back as float32, so pooling and normalisation run as before.
* ``int8``: the backbone exported to ONNX once and statically quantised with
  onnxruntime (per-channel int8 weights, uint8 activations, QDQ), calibrated
  on photos that ship with scikit-image, so the same weights always give the
  same model. TensorFlow-style "SAME" paddings are exported as the ONNX
  convolution's own ``auto_pad``, so one model serves every image shape; the
  export is checked against the network on a probe of another shape and
  refused when they differ. The quantised model is cached under
  ``$CBIR_CACHE/int8`` (else ``~/.cache/cbir/int8``).

A collection records the precision that made it; its queries are encoded at
that precision (``EncoderSpec.precision``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from cbir.core.caches import cache_folder
from cbir.encoders.fusion import SymmetricSameConv2d
from cbir.io.atomic import atomic_write

CALIBRATION_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "colorwheel", "brick", "grass", "gravel", "camera",
)
EXPORT_SIZE = (1, 3, 224, 320)
PROBE_SIZE = (2, 3, 97, 130)  # another shape, odd and even sides: the exported paddings must follow it
EXPORT_TOLERANCE = 1e-4  # largest accepted difference of the fp32 export, relative to the largest feature value
INT8_FORMAT = 1  # bump when the export or the quantisation changes, so cached models are remade


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's own check: AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Bf16Backbone(nn.Module):
    """A backbone run in bfloat16: float32 in, float32 feature maps out."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.body = backbone.to(torch.bfloat16)
        for module in self.body.modules():
            if isinstance(module, SymmetricSameConv2d):
                module._variants.clear()  # cached float32 kernels
        self.channels = backbone.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.to(torch.bfloat16)).float()


class OnnxBackbone(nn.Module):
    """A backbone run by onnxruntime from an ONNX file: float32 batches in, float32 feature maps out."""

    def __init__(self, path: str | Path, channels: int):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as OMP_WAIT_POLICY=PASSIVE
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.detach().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: batch})[0])


def export_onnx(backbone: nn.Module, path: str | Path) -> None:
    """Write ``backbone`` (as trained, not rewritten) to ``path`` as ONNX with free batch size and sides,
    checked on a probe of another shape."""
    import onnx

    backbone.eval()
    with tempfile.TemporaryDirectory() as folder:
        traced = Path(folder) / "traced.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on frozen sizes: the paddings are rewritten below
            torch.onnx.export(
                backbone, (torch.zeros(EXPORT_SIZE),), str(traced), dynamo=False, opset_version=17,
                input_names=["images"], output_names=["features"],
                dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch", 2: "h", 3: "w"}},
            )
        model = onnx.load(str(traced))
    same_paddings_as_auto_pad(model)
    with atomic_write(path) as stream:
        stream.write(model.SerializeToString())
    probe = torch.randn(PROBE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = backbone(probe)
    got = OnnxBackbone(path, 0)(probe)
    difference = (expected - got).abs().max().item() if expected.shape == got.shape else float("inf")
    if difference > EXPORT_TOLERANCE * max(expected.abs().max().item(), 1.0):
        Path(path).unlink()
        raise ValueError(f"the ONNX export of this backbone gives other features (max difference {difference:.3g}); use fp32 or bf16")


def same_paddings_as_auto_pad(model) -> int:
    """Replace each ``Pad`` that feeds only a ``Conv`` (a traced TensorFlow "SAME" padding, frozen at the traced
    size) with the convolution's ``auto_pad=SAME_UPPER``, which pads any size that way; returns how many."""
    import onnx

    graph = model.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced = 0
    for pad in [node for node in graph.node if node.op_type == "Pad"]:
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            continue
        conv = users[0]
        attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in conv.attribute}
        if any(attributes.get("pads", [0])) or attributes.get("auto_pad", b"NOTSET") != b"NOTSET":
            continue
        kept = [attribute for attribute in conv.attribute if attribute.name not in ("pads", "auto_pad")]
        del conv.attribute[:]
        conv.attribute.extend([*kept, onnx.helper.make_attribute("auto_pad", "SAME_UPPER")])
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        replaced += 1
    drop_unused_nodes(graph)
    return replaced


def drop_unused_nodes(graph) -> None:
    """Remove the nodes none of whose outputs is used (what computed the frozen paddings)."""
    outputs = {output.name for output in graph.output}
    while True:
        used = outputs | {name for node in graph.node for name in node.input}
        unused = [node for node in graph.node if not any(name in used for name in node.output)]
        if not unused:
            return
        for node in unused:
            graph.node.remove(node)


def calibration_photos() -> list[np.ndarray]:
    """The RGB photos int8 models are calibrated on (bundled with scikit-image, no download)."""
    import skimage.data

    photos = []
    for name in CALIBRATION_PHOTOS:
        image = getattr(skimage.data, name)()
        photos.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3])
    return photos


def quantize_int8(fp32_path: str | Path, path: str | Path, calibration: Sequence[torch.Tensor]) -> None:
    """Statically quantise the ONNX model at ``fp32_path`` into ``path``, calibrated on ``calibration``
    (3 x H x W tensors as the network takes them)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": tensor.unsqueeze(0).contiguous().numpy()} for tensor in calibration])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quantized = Path(folder) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
        with atomic_write(path) as stream:
            stream.write(quantized.read_bytes())


def int8_backbone(backbone: nn.Module, identity: dict, calibration: Callable[[], Sequence[torch.Tensor]]) -> OnnxBackbone:
    """``backbone`` (as trained) quantised to int8: made once per ``identity`` (what decides its weights) and cached."""
    try:
        import onnx  # noqa: F401 (the export and the quantisation need it)
        import onnxruntime
    except ImportError:
        raise ValueError("int8 inference needs the onnx and onnxruntime packages: pip install 'cbir[precision]'") from None

    key = json.dumps({**identity, "format": INT8_FORMAT, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}, sort_keys=True)
    path = cache_folder("int8") / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            fp32_path = Path(folder) / "fp32.onnx"
            export_onnx(backbone, fp32_path)
            quantize_int8(fp32_path, path, calibration())
    return OnnxBackbone(path, backbone.channels)

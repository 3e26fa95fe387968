"""Make the batch dimension of MobileFaceNet.onnx free, so many faces run in one call.

    python bench/faces/mobilefacenet_batch.py ../shared/data/weights/mobilefacenet/MobileFaceNet.onnx \
        cbir/faces/weights/mobilefacenet/MobileFaceNet.onnx

The published export fixes the batch to 1 (input 1x3x112x112, a final Reshape to [1, -1]); this
names the batch dimension ``batch`` and reshapes to [-1, 128]. Weights and every other node are
unchanged. Needs the ``onnx`` package (not a dependency of cbir).
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def free_batch(source: str, target: str) -> None:
    model = onnx.load(source)
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    reshapes = [node for node in graph.node if node.op_type == "Reshape"]
    if len(reshapes) != 1 or graph.output[0].name not in reshapes[0].output:
        sys.exit(f"{source} is not the expected export (one final Reshape)")
    shape_name = reshapes[0].input[1]
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == shape_name:
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([-1, 128], dtype=np.int64), node.attribute[0].t.name))
    onnx.checker.check_model(model)
    onnx.save(model, target)


if __name__ == "__main__":
    free_batch(sys.argv[1], sys.argv[2])

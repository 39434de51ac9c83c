"""A small image model with an N-d input: scikit-learn's bundled 8x8 digits, classified by a
linear layer fitted on them, saved as ONNX and as a torch.export program.

Its input is a batch of images, FP32 [-1, 8, 8], which a service must take as nested rows,
flat row-major data and binary tensors alike; its output a digit per image, INT64 [-1].
"""

import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

IMAGES = load_digits().images.astype(np.float32)  # (1797, 8, 8), values 0 to 16
NAME, INPUT, OUTPUT = "digits", "pixels", "digit"


def weights() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    fitted = LogisticRegression(max_iter=2000).fit(digits.data, digits.target)
    return fitted.coef_.T.astype(np.float32), fitted.intercept_.astype(np.float32)


def model_dir(framework: str, into: Path) -> Path:
    """`into` as a model directory of the digits model for `framework`."""
    weight, bias = weights()
    if framework == "onnxruntime":
        artifact = "model.onnx"
        (into / artifact).write_bytes(_onnx(weight, bias))
    elif framework == "pytorch":
        artifact = "model.pt2"
        _torch(weight, bias, into / artifact)
    else:
        raise ValueError(f"no digits model for {framework}")
    metadata = {
        "name": NAME,
        "version": "1",
        "framework": framework,
        "artifact": artifact,
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, 8, 8]}],
        "outputs": [{"name": OUTPUT, "datatype": "INT64", "shape": [-1]}],
    }
    (into / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    for path in (into, *into.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
    return into


def _onnx(weight: np.ndarray, bias: np.ndarray) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weight"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], [OUTPUT], axis=1, keepdims=0),
        ],
        "digits",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 8, 8])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.INT64, ["batch"])],
        [
            numpy_helper.from_array(np.array([-1, 64], np.int64), "flat_shape"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every ONNX Runtime of the last years reads
    return model.SerializeToString()


def _torch(weight: np.ndarray, bias: np.ndarray, path: Path) -> None:
    import torch
    from torch import nn

    class Digits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.linear(pixels.flatten(1)).argmax(dim=1)

    module = Digits().eval()
    with torch.no_grad():
        module.linear.weight.copy_(torch.from_numpy(weight.T))
        module.linear.bias.copy_(torch.from_numpy(bias))
    batch = torch.export.Dim("batch")
    example = (torch.from_numpy(IMAGES[:2]),)
    program = torch.export.export(module, example, dynamic_shapes={"pixels": {0: batch}})
    torch.export.save(program, path)

"""The model's input and output tensors: name, datatype and shape, in the Open Inference
Protocol's terms, read from metadata.json."""

from dataclasses import dataclass

import numpy as np

# The protocol's datatypes and the numpy dtypes that hold them (BYTES: Python strings).
DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
    "BYTES": "object",
}  # fmt: skip
DATATYPES = {np.dtype(dtype): datatype for datatype, dtype in DTYPES.items()}


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    # -1 for the batch dimension (always the first) and for any other of variable size.
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.datatype])

    def takes(self, shape: tuple[int, ...] | list[int]) -> bool:
        """Whether a tensor of `shape` fits this one: the same rank, and each size past the
        batch dimension equal where this one's is fixed."""
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape[1:], shape[1:], strict=True)
        )

    def describe(self) -> str:
        return f"{self.name!r} ({self.datatype} {list(self.shape)})"

    def as_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def datatype_of(dtype: np.dtype) -> str:
    """The protocol's name for a numpy dtype; strings of any kind are BYTES."""
    if (datatype := DATATYPES.get(dtype)) is not None:  # the common case, on every answer
        return datatype
    if dtype.kind in "OUS":
        return "BYTES"
    try:
        return DATATYPES[dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"the model gives {dtype} values, which no datatype holds") from None


def model_input(metadata: dict) -> Tensor:
    """The one input tensor metadata.json declares, or its older `input_schema` form
    (`n_features` of one `dtype`: rows of shape [-1, n_features])."""
    if "inputs" in metadata:
        declared = metadata["inputs"]
        if not isinstance(declared, list) or len(declared) != 1:
            raise ValueError("metadata.json must declare one input: the service feeds one tensor")
        tensor = _tensor(declared[0], "inputs[0]")
    else:
        schema = metadata["input_schema"]
        tensor = Tensor("input", datatype_of(np.dtype(schema["dtype"])), (-1, schema["n_features"]))
    if tensor.shape[:1] != (-1,):
        raise ValueError(
            f"metadata.json declares the input {tensor.describe()}: its first dimension is the "
            "batch of rows, which the service sizes, so declare it -1"
        )
    return tensor


def model_output(metadata: dict, warm_up: np.ndarray) -> Tensor:
    """The output tensor metadata.json declares, checked against what the model gave for the
    warm-up rows; where none is declared, what the model gave."""
    given = Tensor("predictions", datatype_of(warm_up.dtype), (-1, *warm_up.shape[1:]))
    if "outputs" not in metadata:
        return given
    declared = metadata["outputs"]
    if not isinstance(declared, list) or len(declared) != 1:
        raise ValueError("metadata.json must declare one output: the model gives one tensor")
    tensor = _tensor(declared[0], "outputs[0]")
    if tensor.datatype != given.datatype or not tensor.takes(given.shape) or tensor.shape[0] != -1:
        raise ValueError(
            f"metadata.json declares the output {tensor.describe()}, but the model gives "
            f"{given.datatype} of shape {list(given.shape)}: correct the declaration"
        )
    return tensor


def warm_up_rows(tensor: Tensor) -> np.ndarray:
    """One row of zeros (or empty strings), a variable dimension taken as 1."""
    shape = [1 if size == -1 else size for size in tensor.shape]
    if tensor.datatype == "BYTES":
        return np.full(shape, "", object)
    return np.zeros(shape, tensor.dtype)


def _tensor(declared: object, where: str) -> Tensor:
    fields = declared if isinstance(declared, dict) else {}
    name, datatype, shape = fields.get("name"), fields.get("datatype"), fields.get("shape")
    valid = (
        isinstance(name, str) and datatype in DTYPES and isinstance(shape, list) and shape
        and all(type(size) is int and (size > 0 or size == -1) for size in shape)
    )  # fmt: skip
    if not valid:
        raise ValueError(
            f"metadata.json's {where} must be an object with a name, a datatype (one of "
            f"{', '.join(DTYPES)}) and a shape ([-1, size or -1, ...]), not {declared!r}"
        )
    return Tensor(name, datatype, tuple(shape))

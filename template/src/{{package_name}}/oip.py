"""The Open Inference Protocol (v2, REST): what its requests ask, and how its answers read.

Beside /predict and through the same validation and micro-batcher: an infer request's
one input becomes the rows of a batch. JSON tensors and the binary tensor data extension
(Triton's clients use it by default): a JSON header of Inference-Header-Content-Length
bytes, then each binary tensor's raw little-endian bytes, in order.
"""

import json
import math
import struct
from typing import NamedTuple

import numpy as np

from .errors import RequestError
from .instances import parse_body
from .tensors import DTYPES, Tensor, datatype_of
from .values import as_dtype, from_json, nested

EXTENSIONS = ["binary_tensor_data"]
BINARY_HEADER = "Inference-Header-Content-Length"


def speaks(path: str) -> bool:
    """Whether a request path is the protocol's: its errors take the protocol's shape."""
    return path == "/v2" or path.startswith("/v2/")


def error_body(error: RequestError) -> tuple[dict, int]:
    """The protocol's error shape, and its status: 400 for any bad input."""
    return {"error": error.message}, 400 if error.status == 422 else error.status


def check_encoding(content_encoding: str | None) -> None:
    if content_encoding not in (None, "", "identity"):
        message = f"Content-Encoding is {content_encoding!r}: send the body uncompressed"
        raise RequestError(415, "unsupported_media_type", message)


def server_metadata(name: str, version: str) -> dict:
    return {"name": name, "version": version, "extensions": EXTENSIONS}


def model_metadata(metadata: dict, model_input: Tensor, output: Tensor) -> dict:
    return {
        "name": metadata["name"],
        "versions": [metadata["version"]],
        "platform": metadata["framework"],
        "inputs": [model_input.as_dict()],
        "outputs": [output.as_dict()],
    }


def check_model(metadata: dict, name: str, version: str | None) -> None:
    """404 unless the path names the served model (and its version, if it names one)."""
    if name != metadata["name"]:
        message = f"no model {name!r}: this service serves {metadata['name']!r}"
        raise RequestError(404, "unknown_model", message)
    if version is not None and version != metadata["version"]:
        served = f"{metadata['name']!r} version {metadata['version']!r}"
        raise RequestError(404, "unknown_version", f"no version {version!r}: it serves {served}")


class Inference(NamedTuple):  # a tuple: built on every request, cheaper than a dataclass
    """A parsed infer request: its rows for the batcher, and how it wants the answer."""

    id: str | None
    rows: np.ndarray
    outputs: tuple[str, ...]  # the output tensors asked for, by name
    binary: frozenset[str]  # those asked for as binary data


def parse_infer(
    body: bytes, header_length: str | None, model_input: Tensor, output: Tensor, max_rows: int
) -> Inference:
    """Read an infer request (JSON, or JSON then binary tensors), or refuse it (422: bad input)."""
    blobs = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            message = f"{BINARY_HEADER} is {header_length!r}, past the body's {len(body)} bytes"
            raise RequestError(422, "invalid_body", message)
        body, blobs = body[: int(header_length)], body[int(header_length) :]
    request = parse_body(body)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise RequestError(422, "invalid_body", 'expected a JSON object {"inputs": [...], ...}')
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(422, "invalid_body", f"id is {request_id!r}: it must be a string")
    if len(request["inputs"]) != 1:
        message = f"{len(request['inputs'])} inputs: the model takes one, {model_input.describe()}"
        raise RequestError(422, "invalid_inputs", message)
    rows = _rows(request["inputs"][0], blobs, model_input, max_rows)
    outputs, binary = _outputs_wanted(request, output)
    return Inference(request_id, rows, outputs, binary)


def infer_response(
    inference: Inference, predictions: np.ndarray, metadata: dict
) -> tuple[bytes, dict[str, str]]:
    """The answer's body and headers: JSON, or JSON then binary outputs where asked."""
    answer = {"model_name": metadata["name"], "model_version": metadata["version"]}
    if inference.id is not None:
        answer["id"] = inference.id
    datatype = datatype_of(predictions.dtype)
    tensors, blobs = [], []
    for name in inference.outputs:
        tensor = {"name": name, "datatype": datatype, "shape": list(predictions.shape)}
        if name in inference.binary:
            blobs.append(_to_binary(predictions))
            tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            tensor["data"] = predictions.reshape(-1).tolist()
        tensors.append(tensor)
    answer["outputs"] = tensors
    header = json.dumps(answer).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(header))}
    return b"".join([header, *blobs]), headers


def _rows(given: object, blobs: bytes, model_input: Tensor, max_rows: int) -> np.ndarray:
    if not isinstance(given, dict):
        raise RequestError(422, "invalid_inputs", "inputs[0] must be an object")
    name, datatype, shape = given.get("name"), given.get("datatype"), given.get("shape")
    if name != model_input.name:
        message = f"inputs[0] is named {name!r}: the model takes {model_input.describe()}"
        raise RequestError(422, "invalid_inputs", message)
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise RequestError(422, "invalid_shape", f"inputs[0].shape is {shape!r}: sizes, please")
    if not model_input.takes(shape):
        message = f"inputs[0] has shape {shape}: the model takes {model_input.describe()}"
        raise RequestError(422, "invalid_shape", message)
    if not 1 <= shape[0] <= max_rows:
        message = f"inputs[0] has {shape[0]} rows; from 1 to {max_rows} per request"
        raise RequestError(422, "too_many_rows", message)
    if not isinstance(datatype, str) or datatype not in DTYPES:
        message = f"inputs[0].datatype is {datatype!r}, not one of {', '.join(DTYPES)}"
        raise RequestError(422, "invalid_type", message)
    dtype = np.dtype(DTYPES[datatype])
    parameters = given.get("parameters") or {}
    if not isinstance(parameters, dict) or "shared_memory_region" in parameters:
        message = "inputs[0].parameters: shared memory is not supported here"
        raise RequestError(422, "invalid_inputs", message)
    # Each value is first one the request's datatype holds (300 is no INT8, whatever the
    # model takes), then one the model's dtype holds: one step where the two are the same.
    if "binary_data_size" in parameters:
        binary = _from_binary(blobs, parameters["binary_data_size"], dtype, shape)
        values = as_dtype(binary, dtype, _locate)  # raw bytes may hold NaN
    elif blobs:
        message = f"{len(blobs)} bytes follow the JSON header, but no input has binary_data_size"
        raise RequestError(422, "invalid_body", message)
    elif "data" in given:
        values = _from_json(given["data"], dtype, shape)
    else:
        raise RequestError(422, "invalid_inputs", "inputs[0] has neither data nor binary data")
    if values.dtype != model_input.dtype:
        values = as_dtype(values, model_input.dtype, _locate)
    return values.reshape(shape)


def _locate(i: int) -> str:
    return f"inputs[0].data[{i}]"


def _from_json(data: object, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    """Flat data in row-major order, or nested lists of exactly the shape."""
    if not isinstance(data, list):
        raise RequestError(422, "invalid_shape", "inputs[0].data must be a list")
    if not any(type(item) is list for item in data):
        leaves = data
    else:
        leaves, _ = nested(data, tuple(shape), "inputs[0].data")
    if len(leaves) != math.prod(shape):
        message = f"inputs[0].data has {len(leaves)} values for shape {shape}"
        raise RequestError(422, "invalid_shape", message)
    return from_json(leaves, dtype, _locate)


def _from_binary(blobs: bytes, size: object, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    if type(size) is not int or not 0 <= size <= len(blobs) or len(blobs) != size:
        message = f"binary_data_size is {size!r}, but {len(blobs)} bytes follow the JSON header"
        raise RequestError(422, "invalid_body", message)
    count = math.prod(shape)
    if dtype.kind == "O":  # each element: its length (4 bytes), then its bytes
        return np.array(_strings(blobs, count), dtype)
    if size != count * dtype.itemsize:
        message = f"{size} bytes of binary data for {count} {dtype} values"
        raise RequestError(422, "invalid_shape", message)
    return np.frombuffer(blobs, dtype.newbyteorder("<")).astype(dtype)  # writable, native


def _strings(blob: bytes, count: int) -> list[str]:
    strings, offset = [], 0
    try:
        for _ in range(count):
            (length,) = struct.unpack_from("<I", blob, offset)
            strings.append(blob[offset + 4 : offset + 4 + length].decode())
            offset += 4 + length
    except (struct.error, UnicodeDecodeError) as error:
        raise RequestError(422, "invalid_value", f"inputs[0]'s BYTES: {error}") from None
    if offset != len(blob):
        raise RequestError(422, "invalid_shape", f"inputs[0]'s BYTES are not {count} strings")
    return strings


def _to_binary(values: np.ndarray) -> bytes:
    if values.dtype.kind in "OUS":
        encoded = [str(value).encode() for value in values.reshape(-1)]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    return values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()


def _outputs_wanted(request: dict, output: Tensor) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for (all, where none are named), and those asked as binary data."""
    parameters = request.get("parameters") or {}
    all_binary = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    asked = request.get("outputs")
    if asked is None:
        return (output.name,), frozenset([output.name] if all_binary else [])
    if not isinstance(asked, list) or not all(isinstance(item, dict) for item in asked):
        raise RequestError(422, "invalid_outputs", "outputs must be a list of objects")
    names, binary = [], set()
    for i, item in enumerate(asked):
        if item.get("name") != output.name:
            message = f"outputs[{i}] is {item.get('name')!r}: the model gives {output.describe()}"
            raise RequestError(422, "invalid_outputs", message)
        wanted = item.get("parameters") or {}
        if unsupported := {"classification", "shared_memory_region"} & set(wanted):
            message = f"outputs[{i}] asks for {', '.join(sorted(unsupported))}: not supported here"
            raise RequestError(422, "invalid_outputs", message)
        names.append(output.name)
        if wanted.get("binary_data", all_binary) is True:
            binary.add(output.name)
    return tuple(names), frozenset(binary)

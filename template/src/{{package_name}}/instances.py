"""Validation of /predict requests against the model's input tensor."""

import json

import numpy as np

from .errors import RequestError
from .tensors import Tensor
from .values import from_json, nested


def parse_body(body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"request body is not valid JSON: {error}"
        raise RequestError(400, "invalid_json", message) from None
    except RecursionError:
        raise RequestError(400, "invalid_json", "request body is nested too deeply") from None


def check_body_size(size: int, limit: int) -> None:
    if size > limit:
        raise RequestError(413, "body_too_large", f"request body over {limit} bytes")


def parse_instances(payload: object, tensor: Tensor, max_rows: int) -> np.ndarray:
    """Turn `{"instances": [row, ...]}` into an array of the input's shape and dtype, each
    row nested lists of the input's shape past the batch dimension, or refuse it."""
    if not isinstance(payload, dict) or "instances" not in payload:
        expected = 'expected a JSON object {"instances": [[...], ...]}'
        raise RequestError(422, "invalid_body", expected)
    rows = payload["instances"]
    if not isinstance(rows, list) or not rows:
        raise RequestError(422, "invalid_instances", "instances must be a non-empty list of rows")
    if len(rows) > max_rows:
        raise RequestError(
            422, "too_many_rows", f"{len(rows)} instances; at most {max_rows} per request"
        )
    leaves, shape = nested(rows, tensor.shape, "instances")

    def locate(i: int) -> str:
        return "instances" + "".join(f"[{n}]" for n in np.unravel_index(i, shape))

    return from_json(leaves, tensor.dtype, locate).reshape(shape)

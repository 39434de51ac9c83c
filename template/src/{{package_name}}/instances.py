"""Validation of prediction requests against the model's input schema."""

import json
import math

import numpy as np

from .errors import RequestError


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


def parse_instances(payload: object, n_features: int, max_rows: int, dtype: str) -> np.ndarray:
    """Turn `{"instances": [[...], ...]}` into a (rows, n_features) array, or refuse it."""
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
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n_features:
            raise RequestError(
                422, "invalid_shape", f"instances[{i}] must be a list of {n_features} numbers"
            )
        for j, value in enumerate(row):
            # bool is an int subclass, but True is not a measurement.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(
                    422, "invalid_type", f"instances[{i}][{j}] is {value!r}, not a number"
                )
            if not _is_finite(value):
                raise RequestError(
                    422, "invalid_value", f"instances[{i}][{j}] is {value}, not a finite number"
                )
    return _as_dtype(rows, np.dtype(dtype))


def _as_dtype(rows: list, dtype: np.dtype) -> np.ndarray:
    """The rows in the model's dtype, refusing values that dtype cannot hold: 1e300 is
    finite as a float, but inf as float32, and a model fed inf fails its whole batch."""
    values = np.asarray(rows, dtype=np.float64)
    limits = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    outside = (values < limits.min) | (values > limits.max)
    if dtype.kind in "iu":
        outside |= values != np.round(values)
    if outside.any():
        i, j = (int(index) for index in np.argwhere(outside)[0])
        raise RequestError(
            422, "invalid_value", f"instances[{i}][{j}] is {rows[i][j]}, which {dtype} cannot hold"
        )
    return values.astype(dtype, copy=False)


def _is_finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False

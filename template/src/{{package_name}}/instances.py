"""Validation of prediction requests against the model's input schema."""

import functools
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
    low, high, whole = _limits(dtype)
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
            # Checked here, in the model's dtype, not after the cast: 1e300 is a finite
            # float, but inf as float32, and a model fed inf fails its whole batch.
            if not low <= value <= high or (whole and value != int(value)):
                message = f"instances[{i}][{j}] is {value}, which {dtype} cannot hold"
                raise RequestError(422, "invalid_value", message)
    return np.asarray(rows, dtype=dtype)


@functools.cache
def _limits(dtype: str) -> tuple[int | float, int | float, bool]:
    """The least and greatest value `dtype` holds (exact Python numbers), and whether it
    holds only whole numbers."""
    if np.dtype(dtype).kind == "f":
        limits = np.finfo(dtype)
        return float(limits.min), float(limits.max), False
    limits = np.iinfo(dtype)
    return int(limits.min), int(limits.max), True


def _is_finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False

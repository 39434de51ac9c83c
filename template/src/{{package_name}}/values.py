"""A request's values as an array of the model's dtype: refused, never silently changed,
where that dtype cannot hold them. Shared by /predict and the Open Inference Protocol."""

import contextlib
import functools
import itertools
from collections.abc import Callable

import numpy as np

from .errors import RequestError

# Where the value at a flat, row-major index came from, as the caller wrote it.
Locate = Callable[[int], str]

# The JSON values each kind of dtype takes: bool is not a number here, though Python's
# bool is an int (True is not a measurement), and a whole float is a fine integer.
JSON_TYPES = {"b": {bool}, "i": {int, float}, "u": {int, float}, "f": {int, float}, "O": {str}}


def nested(data: object, shape: tuple[int, ...], where: str) -> tuple[list, tuple[int, ...]]:
    """The leaves of nested lists, row-major, and their shape; refused unless each level is a
    list of one length, that of `shape` (-1: any)."""
    level, sizes = [data], []
    for depth, size in enumerate(shape):
        first = level[0]
        if type(first) is not list or (size != -1 and len(first) != size) or not first:
            _irregular(level, 0, depth, sizes, shape, where)
        size = len(first)
        if not all(type(item) is list and len(item) == size for item in level):
            bad = next(i for i, x in enumerate(level) if type(x) is not list or len(x) != size)
            _irregular(level, bad, depth, sizes, shape, where)
        sizes.append(size)
        level = list(itertools.chain.from_iterable(level))
    return level, tuple(sizes)


def from_json(leaves: list, dtype: np.dtype, locate: Locate) -> np.ndarray:
    """JSON values as a 1-D array of `dtype`, or refused: each must be a value of its kind
    that `dtype` holds (a float of float32 range, an integer of int8 range, ...)."""
    allowed = JSON_TYPES[dtype.kind]
    if not set(map(type, leaves)) <= allowed:
        i, value = next((i, v) for i, v in enumerate(leaves) if type(v) not in allowed)
        kind = {"b": "true or false", "O": "a string"}.get(dtype.kind, "a number")
        raise RequestError(422, "invalid_type", f"{locate(i)} is {_shown(value)}, not {kind}")
    if dtype.kind in "bO":
        return np.array(leaves, dtype)
    try:
        # Exact for integers that int64 holds; floats (and larger integers) as float64.
        parsed = np.array(leaves, np.int64 if float not in map(type, leaves) else np.float64)
    except OverflowError:  # an integer that neither holds: a uint64, or one out of range
        if dtype.kind == "u":
            with contextlib.suppress(OverflowError):
                return np.array(leaves, dtype)
        low, high = _limits(dtype)
        i = next(i for i, v in enumerate(leaves) if type(v) is int and not low <= v < high)
        raise _cannot_hold(locate(i), leaves[i], dtype) from None
    return as_dtype(parsed, dtype, locate)


def as_dtype(values: np.ndarray, dtype: np.dtype, locate: Locate) -> np.ndarray:
    """`values` cast to `dtype`, or refused where a value would change: not finite, out of
    range, not whole for an integer type, an integer a float type rounds. A float keeps
    the precision of the model's float type, as it always does when fed to it."""
    source = values.dtype
    if source.kind == dtype.kind == "f" and values.size:
        # One pass for the common case, JSON's float64 for a float model: every value
        # finite and in range (NaN fails the comparison), else the refusal below finds it.
        if float(np.abs(values).max()) < _limits(dtype)[1]:  # compared as float64, exactly
            return values if source == dtype else values.astype(dtype)
    if source == dtype:
        if dtype.kind == "f":
            _refuse(~np.isfinite(values), values, dtype, locate)
        return values
    if dtype.kind == "O" or source.kind == "O" or (dtype.kind == "b") != (source.kind == "b"):
        if not (source.kind == "b" and dtype.kind in "iuf"):  # true and false are 1 and 0
            takes = {"O": "strings", "b": "true or false"}.get(dtype.kind, str(dtype))
            message = f"the model takes {takes}, not {source} values"
            raise RequestError(422, "invalid_type", message)
        return values.astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        if source.kind == "f":
            low, high = _limits(dtype)
            # Compared as float64: against float32 values the bounds would be rounded to
            # float32 first, and 65504, float16's greatest, would look out of its range.
            wide = values.astype(np.float64, copy=False)
            bad = ~np.isfinite(wide) | (wide < low) | (wide >= high)
            if dtype.kind in "iu":
                bad |= wide != np.floor(wide)
            _refuse(bad, values, dtype, locate)
            return values.astype(dtype)
        if dtype.kind == "f":  # an integer must come back from the float type unchanged
            cast = values.astype(dtype)
            _refuse(cast.astype(source) != values, values, dtype, locate)
            return cast
        low, high = _limits(dtype, within=source)
        _refuse((values < low) | (values >= high), values, dtype, locate)
        return values.astype(dtype)


def _refuse(bad: np.ndarray, values: np.ndarray, dtype: np.dtype, locate: Locate) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _cannot_hold(locate(i), values.flat[i].item(), dtype)


def _cannot_hold(where: str, value: object, dtype: np.dtype) -> RequestError:
    if isinstance(value, float) and not np.isfinite(value):
        return RequestError(422, "invalid_value", f"{where} is {value}, not a finite number")
    message = f"{where} is {_shown(value)}, which {dtype} cannot hold"
    return RequestError(422, "invalid_value", message)


def _shown(value: object) -> str:
    """A value as the error message quotes it: a 400-digit number, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


@functools.cache
def _limits(dtype: np.dtype, within: np.dtype | None = None) -> tuple:
    """The least value `dtype` holds and the least above its greatest (a float's
    greatest, for float types), as scalars of `within`, clipped to its range, for exact
    comparisons with `within`'s values; floats for comparisons with float64 values."""
    if dtype.kind == "f":
        greatest = float(np.finfo(dtype).max)
        with np.errstate(over="ignore"):  # past float64's greatest is inf, as it should be
            return -greatest, float(np.nextafter(greatest, np.inf))
    low, high = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max) + 1
    if within is None:
        return float(low), float(high)  # powers of two: exact as floats
    bounds = np.iinfo(within)
    return within.type(max(low, bounds.min)), within.type(high) if high <= bounds.max else np.inf


def _irregular(level, i, depth, sizes, shape, where) -> None:
    path = "".join(f"[{n}]" for n in np.unravel_index(i, sizes)) if sizes else ""
    want = [size if size != -1 else "n" for size in shape[depth:]]
    got = type(level[i]).__name__ if type(level[i]) is not list else f"{len(level[i])} items"
    message = f"{where}{path} must be nested lists of shape {want}, not {got}"
    raise RequestError(422, "invalid_shape", message)

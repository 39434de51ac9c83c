"""When a model call fails: whose failure it is, and how its requests are answered and told.

A row the model chokes on is its request's failure (500, that request only); a model that
fails on the rows it answered at load too is failing as a whole (a sticky CUDA error, a
broken native library): its requests get a fast 503, and once that persists the worker is
replaced. Each distinct failure is logged once with its traceback, then only counted.
"""

import logging
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Protocol

import numpy as np

from . import logs
from .errors import RequestError
from .metrics import FAILURES

log = logging.getLogger(__name__)

# Model calls in a row that fail, the warm-up rows too, before the worker is replaced: a
# sticky CUDA error or a broken native library fails every call, and no retry here helps.
FAILED_PROBES_BEFORE_REPLACEMENT = 3
# Distinct failures logged with a traceback per worker; beyond that, only counted.
MAX_LOGGED_FAILURES = 100


class Waiting(Protocol):
    """A request waiting on its future: its rows, and its id for the log."""

    rows: np.ndarray
    future: Future
    request_id: str


class Failures:
    """Tells a failed call's cause and answers its requests; `failing` says why the model
    fails every call, once that persists."""

    def __init__(
        self, predict: Callable[[np.ndarray], np.ndarray], probe: np.ndarray | None
    ) -> None:
        self._predict = predict
        self._probe = probe  # rows the model answered at load, to tell its failures apart
        self._failed_probes = 0  # calls in a row failed with the probe failing too
        self.failing: str | None = None
        self._logged: set[tuple[str, str]] = set()  # failures logged with their traceback

    def answered(self) -> None:
        """A call succeeded: the model is not failing as a whole."""
        self._failed_probes = 0

    def model_answers_the_probe(self) -> bool:
        """Whether the model still answers the warm-up rows it answered at load: if not,
        a failed call was the model's failure, not its input's."""
        if self._probe is None:
            return True
        try:
            self._predict(self._probe)
        except Exception:
            return False
        self._failed_probes = 0
        return True

    def model_failing(self, requests: list[Waiting], failure: Exception) -> None:
        """The model failed on the probe too: every request of the call gets a fast 503
        (another replica may answer it); once that persists the supervisor replaces the
        worker, as it does a hung model."""
        self._failed_probes += 1
        if self._failed_probes >= FAILED_PROBES_BEFORE_REPLACEMENT:
            self.failing = f"the model fails on every call, its warm-up rows too: {what(failure)}"
        error = RequestError(
            503, "model_failing", "the model fails on every input just now, not only on "
            "this request's: try again shortly, or another replica", retry_after=1,
        )  # fmt: skip
        self.fail(requests, failure, error)

    def fail(self, requests: list[Waiting], failure: Exception, error: RequestError) -> None:
        """Answer `requests` with `error`: a log line per distinct failure with its
        traceback, then only the count, so a model failing on every call cannot flood it."""
        FAILURES.labels(error.code).inc(len(requests))
        signature = (error.code, what(failure))
        if signature in self._logged:
            log.debug("%s again for %d requests", error.code, len(requests))
        elif len(self._logged) < MAX_LOGGED_FAILURES:
            self._logged.add(signature)
            token = logs.request_id.set(requests[0].request_id)
            rows = sum(len(request.rows) for request in requests)
            log.error(
                "%s: %d requests (%d rows) failed: %s; the same failure is only counted from "
                "now on (model_failures_total)", error.code, len(requests), rows,
                what(failure), exc_info=failure,
            )  # fmt: skip
            logs.request_id.reset(token)
        for request in requests:
            settle(request.future, error=error)


def what(failure: Exception) -> str:
    """The failure's type and message: what tells one failure from another."""
    return f"{type(failure).__name__}: {str(failure)[:200]}"


def model_failed() -> RequestError:
    return RequestError(
        500, "prediction_failed", "the model failed on this request: the log has the details"
    )


def settle(future: Future, result: object = None, error: Exception | None = None) -> None:
    """Answer a request unless it is already answered (or was cancelled while queued)."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # answered or cancelled meanwhile
        pass

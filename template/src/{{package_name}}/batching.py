"""Adaptive micro-batching: rows of concurrent requests share one model call."""

import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from . import logs
from .errors import RequestError
from .failures import Failures, model_failed, settle
from .metrics import BATCH_ROWS, ROWS, SHED

log = logging.getLogger(__name__)


@dataclass(eq=False)  # a request is itself: the queue finds a cancelled one by identity
class Request:
    rows: np.ndarray
    future: Future = field(default_factory=Future)
    request_id: str = field(default_factory=logs.request_id.get)  # for the log, in this thread


class MicroBatcher:
    """One thread owns the model; requests hand it rows and wait on a future.

    Adaptive: while the model is busy, arriving requests queue up and the next
    call takes all of them (up to `max_rows`). A call also waits, for at most
    `max_wait`, until it has as many requests as the previous call served: under
    steady load the clients just answered send their next requests a moment
    later, and one call for all of them costs far less than several (a model
    call's fixed cost dwarfs a row's). After a lone request the next one runs at
    once, so light traffic never waits; when load falls, one call waits out
    `max_wait` and the next expects only what that one got. Each request gets
    back exactly its own slice of the predictions, in order.

    Bounded: past `max_queued_rows` waiting rows, a request is refused at once
    (503) rather than queued behind work it would wait seconds for. A request whose
    waiter gave up (its future cancelled: past its deadline, or its client gone)
    leaves the queue and its count at once. Isolated: when a call fails, the
    model is asked for the warm-up rows it answered at load; if it answers them,
    the call is split until the failure is one request's, so a row the model
    chokes on fails only the request that sent it; if not, the failure is the
    model's, and the call's requests get a fast 503 instead of a split.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_rows: int,
        max_wait: float,
        max_queued_rows: int = 1 << 30,
        probe: np.ndarray | None = None,
    ) -> None:
        self._predict = predict
        self._failures = Failures(predict, probe)
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._max_queued_rows = max_queued_rows
        # Submitted requests not yet taken into a call, and their rows. `_wake_at` is how many
        # waiting requests wake the batcher thread: it is woken once per call, not once per
        # request, since on these workers every wake-up is a GIL hand-off between threads.
        self._waiting: deque[Request] = deque()
        self._waiting_rows = 0
        self._arrived = threading.Condition()
        self._wake_at = 1
        self._calling_since: float | None = None  # monotonic start of the running model call
        self._holding: list[Request] = []  # taken from the queue, not yet answered
        self._thread = threading.Thread(target=self._serve, name="micro-batcher", daemon=True)
        self._thread.start()

    def check_room(self, rows: int = 1) -> None:
        """Refuse at once (503) what would wait behind `max_queued_rows` rows; a request
        larger than the bound still gets in when nothing is waiting."""
        queued = self._waiting_rows
        if queued and queued + rows > self._max_queued_rows:
            SHED.labels("queue_full").inc()
            raise RequestError(
                503, "overloaded", f"{queued} rows are already waiting for the model: "
                "try again shortly, or another replica", retry_after=1,
            )  # fmt: skip

    def submit(self, rows: np.ndarray) -> Future:
        request = Request(rows)
        with self._arrived:
            self.check_room(len(rows))
            self._waiting.append(request)
            self._waiting_rows += len(rows)
            if self._enough_waiting(self._wake_at):
                self._arrived.notify()
        request.future.add_done_callback(lambda future: self._withdraw(request, future))
        return request.future

    def _withdraw(self, request: Request, future: Future) -> None:
        """A request cancelled while it waits leaves the queue at once: its rows no longer
        count against `max_queued_rows`, nor take a place in a call."""
        if not future.cancelled():
            return
        with self._arrived:
            try:
                self._waiting.remove(request)
            except ValueError:  # already taken into a call, which drops it
                return
            self._waiting_rows -= len(request.rows)
        SHED.labels("abandoned").inc()

    @property
    def failing(self) -> str | None:
        """Why the model fails every call, once that persists: the worker is to be replaced."""
        return self._failures.failing

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stalled_for(self) -> float:
        """Seconds the running model call has taken so far; 0 between calls."""
        since = self._calling_since
        return time.monotonic() - since if since is not None else 0.0

    def fail_everything(self, error: RequestError) -> None:
        """Answer every request held or queued with `error`: this batcher is being given up."""
        with self._arrived:
            pending = [*self._holding, *self._waiting]
            self._waiting.clear()
            self._waiting_rows = 0
        for request in pending:
            settle(request.future, error=error)

    def _serve(self) -> None:
        expected = 1  # requests the previous call served
        while True:
            batch = self._next_batch(expected)
            try:
                expected = len(batch)
                self._run(batch)
            except Exception:
                # Whatever went wrong, no request is left waiting and the thread carries on.
                log.exception("the micro-batcher failed a batch of %d requests", len(batch))
                for request in batch:
                    settle(request.future, error=model_failed())
            # Not on the way out of a dying thread: the supervisor answers what it held.
            self._holding = []

    def _next_batch(self, expected: int) -> list[Request]:
        """Wait for a request, then (up to `max_wait`) for `expected` of them, and take the
        waiting requests that fit in `max_rows`; a larger one comes next, alone. Rows of
        one call share a shape: a request whose rows differ past the batch dimension (a
        longer sequence) starts the next call."""
        with self._arrived:
            while True:
                self._wake_at = 1
                while not self._waiting:
                    self._arrived.wait()
                # Under load a request is often waiting already when a call ends: it still
                # waits for company, or calls shrink to what had queued (in the benchmark,
                # 24 rows a call instead of 32, and a quarter of the throughput lost).
                self._wake_at = expected
                deadline = time.monotonic() + self._max_wait
                while not self._enough_waiting(expected):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._arrived.wait(remaining):
                        break
                if self._waiting:  # else every waiting request was withdrawn meanwhile
                    break
            self._wake_at = sys.maxsize  # while the model runs, arrivals just wait in line
            batch = [self._waiting.popleft()]
            rows, shape = len(batch[0].rows), batch[0].rows.shape[1:]
            while (
                self._waiting
                and rows + len(self._waiting[0].rows) <= self._max_rows
                and self._waiting[0].rows.shape[1:] == shape
            ):
                batch.append(self._waiting.popleft())
                rows += len(batch[-1].rows)
            self._waiting_rows -= rows
            self._holding = batch
        return batch

    def _enough_waiting(self, requests: int) -> bool:
        """A call has what it waits for: `requests` requests, or a full call's rows."""
        return len(self._waiting) >= requests or self._waiting_rows >= self._max_rows

    def _run(self, batch: list[Request]) -> None:
        # Marks each future running, so a waiter's later cancel() can no longer race set_result.
        live = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if dropped := len(batch) - len(live):
            SHED.labels("abandoned").inc(dropped)
        if not live:
            return
        # One clock for the batch, isolation included: MODEL_CALL_TIMEOUT_S bounds its answer.
        self._calling_since = time.monotonic()
        try:
            if (failure := self._call(live)) is None:
                return
            if self._failures.model_answers_the_probe():
                self._isolate(live, failure)
            else:
                self._failures.model_failing(live, failure)
        finally:
            self._calling_since = None

    def _call(self, batch: list[Request]) -> Exception | None:
        """One model call; each request gets its own slice of the predictions. On failure
        nothing is answered, and the error is returned."""
        features = np.concatenate([r.rows for r in batch]) if len(batch) > 1 else batch[0].rows
        try:
            predictions = self._predict(features)
            if len(predictions) != len(features):
                count = f"{len(predictions)} predictions for {len(features)} rows"
                raise RuntimeError(f"the model gave {count}")
        except Exception as error:
            return error
        self._failures.answered()
        BATCH_ROWS.observe(len(features))
        ROWS.inc(len(features))
        start = 0
        for request in batch:
            settle(request.future, result=predictions[start : start + len(request.rows)])
            start += len(request.rows)
        return None

    def _isolate(self, batch: list[Request], failure: Exception) -> None:
        """Halve a failed call until each failure is one request's (a row the model chokes
        on): a poison request costs two calls per halving. Calls beyond what two poison
        requests need are not made: what is still unresolved then fails as a whole, so a
        model that fails at random costs a bounded number of calls, not one per request."""
        calls_left = 4 * math.ceil(math.log2(len(batch))) if len(batch) > 1 else 0
        failed = [(batch, failure)]
        while failed:
            part, failure = failed.pop()
            if len(part) == 1 or calls_left < 2:
                self._failures.fail(part, failure, model_failed())
                continue
            middle = len(part) // 2
            for half in (part[:middle], part[middle:]):
                calls_left -= 1
                if (error := self._call(half)) is not None:
                    failed.append((half, error))

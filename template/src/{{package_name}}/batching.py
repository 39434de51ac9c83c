"""Adaptive micro-batching: rows of concurrent requests share one model call."""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from .metrics import BATCH_ROWS, ROWS

log = logging.getLogger(__name__)

Request = tuple[np.ndarray, Future]


class MicroBatcher:
    """One thread owns the model; requests hand it rows and wait on a future.

    Adaptive: while the model is busy, arriving requests queue up and the next
    call takes all of them (up to `max_rows`). Once calls merge requests, each
    also waits up to `max_wait` seconds for more; after a lone request, the next
    one runs at once, so light traffic never waits. Each request gets back
    exactly its own slice of the predictions, in order.
    """

    def __init__(self, predict: Callable[[np.ndarray], list], max_rows: int, max_wait: float):
        self._predict = predict
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._queue: queue.SimpleQueue[Request] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="micro-batcher", daemon=True).start()

    def submit(self, rows: np.ndarray) -> Future:
        future: Future = Future()
        self._queue.put((rows, future))
        return future

    def _serve(self) -> None:
        carried: Request | None = None  # did not fit into the previous batch
        merging = False  # the previous call served several requests: traffic is heavy
        while True:
            batch = [carried or self._queue.get()]
            carried = self._fill(batch, self._max_wait if merging else 0.0)
            merging = len(batch) > 1
            self._run(batch)

    def _fill(self, batch: list[Request], max_wait: float) -> Request | None:
        rows = len(batch[0][0])
        deadline = time.monotonic() + max_wait
        while rows < self._max_rows:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    request = self._queue.get(timeout=remaining)
                else:
                    request = self._queue.get_nowait()
            except queue.Empty:
                return None
            if rows + len(request[0]) > self._max_rows:
                return request
            batch.append(request)
            rows += len(request[0])
        return None

    def _run(self, batch: list[Request]) -> None:
        features = np.concatenate([rows for rows, _ in batch]) if len(batch) > 1 else batch[0][0]
        try:
            predictions = self._predict(features)
            if len(predictions) != len(features):
                count = f"{len(predictions)} predictions for {len(features)} rows"
                raise RuntimeError(f"the model gave {count}")
        except Exception as error:
            log.exception("prediction failed for a batch of %d requests", len(batch))
            for _, future in batch:
                future.set_exception(error)
            return
        BATCH_ROWS.observe(len(features))
        ROWS.inc(len(features))
        start = 0
        for rows, future in batch:
            future.set_result(predictions[start : start + len(rows)])
            start += len(rows)

"""Prometheus metrics, summed over every gunicorn worker.

gunicorn_conf.py points PROMETHEUS_MULTIPROC_DIR at a scratch directory before
the workers start; without it (tests, a single process) metrics stay in-process.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ROWS = Counter("predicted_rows_total", "Instances predicted")
SHED = Counter(
    "shed_requests_total",
    "Requests refused or dropped to stay responsive: queue_full, deadline or abandoned",
    ["reason"],
)
FAILURES = Counter(
    "model_failures_total",
    "Requests the model failed: prediction_failed (their own rows) or model_failing (any rows)",
    ["code"],
)
BATCH_ROWS = Histogram(
    "model_batch_rows",
    "Rows per model call (micro-batches merge concurrent requests)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
MODEL_LOAD_SECONDS = Gauge(
    "model_load_seconds",
    "Time the worker took to load and warm up the model",
    multiprocess_mode="max",
)


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

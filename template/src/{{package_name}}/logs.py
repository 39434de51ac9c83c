"""JSON log lines on stderr, each carrying the request id of the request it belongs to."""

import contextvars
import json
import logging
import os
import random
import re
import time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# A line per request makes logging's own bookkeeping a cost: these lines never show the
# caller's file and line, thread, process or asyncio task, so logging need not look them
# up (the logging HOWTO's "Optimization" switches).
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False
logging.logAsyncioTasks = False

_encode = json.JSONEncoder(default=str).encode  # one encoder for every line

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# Request ids: 128 random bits, as a trace id has. Not a secret, so not from `secrets`,
# whose system call lets go of the GIL: the model's thread takes it, and the request waits
# to get it back. A generator of their own, reseeded in each forked worker: a model that
# calls random.seed(42) must not give every worker and pod the same ids.
_ids = random.Random()  # noqa: S311 (ids, not secrets: see above)
os.register_at_fork(after_in_child=_ids.seed)


def accept_request_id(header: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    if header and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return f"{_ids.getrandbits(128):032x}"


class JsonFormatter(logging.Formatter):
    # The time to the second, formatted once a second rather than once a line: one
    # (second, text) pair, replaced whole, so a thread never reads half of an update.
    _stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second, stamp = int(record.created), self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, time.strftime(_TIME_FORMAT, self.converter(second)))
        line = {
            "time": stamp[1],
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line)


def config(level: str) -> dict:
    """logging.config.dictConfig settings: gunicorn, the server and the app all log JSON."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # uvicorn's worker copies gunicorn's loggers' handlers onto its own and stops them
        # propagating: so each has the JSON handler itself, or uvicorn's lines would be lost,
        # or printed as plain text by logging's last resort.
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # One line per request comes from the app, with its request id.
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            "uvicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
    }

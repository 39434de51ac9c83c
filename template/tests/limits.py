"""Small limits for tests, so refusals are cheap to trigger."""

import time
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
MAX_ROWS = 10
MAX_BODY_BYTES = 4096


def wait_ready(client, seconds: float = 60) -> None:
    """The model loads in the background; /readyz says when it is in."""
    deadline = time.monotonic() + seconds
    while (response := client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, response.json()
        time.sleep(0.05)

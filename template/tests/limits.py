"""Small limits for tests, so refusals are cheap to trigger."""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
MAX_ROWS = 10
MAX_BODY_BYTES = 4096

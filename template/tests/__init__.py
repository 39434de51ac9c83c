"""Tests of the service; run with pytest from the repository root."""

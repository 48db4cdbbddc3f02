"""Runwire benchmarks: `uv run python -m bench --quick`."""

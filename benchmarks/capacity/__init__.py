"""``python -m benchmarks.capacity``: followers and slow uploads held open (see run.py)."""

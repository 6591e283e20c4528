"""The benchmarks run as the ``zoo`` command runs: freed memory kept for the next batch (zoo/allocator.py)."""

from zoo.allocator import keep_freed_memory

keep_freed_memory()

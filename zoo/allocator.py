"""The C allocator under the ``zoo`` command: freed memory kept for the next batch instead of given back.

On a CPU, a model's forward pass allocates and frees the same large activations on every batch. glibc's malloc
serves each block over its mmap threshold (128 KiB, rising to at most 32 MiB) with fresh pages from the kernel and
unmaps it when freed, so every batch pays the kernel for zeroing every page of those blocks again: on this
project's 2-core machine about half of an EfficientNet-Lite0 U-Net's inference time (`zoo bench`, 256 px, batch
8: 4.6 photos/s, 9.7 with the memory kept) and a third of a training step's. jemalloc and tcmalloc, which
PyTorch's CPU performance guides suggest preloading, keep freed memory by design; :func:`keep_freed_memory` asks
glibc for the same, and ``zoo`` calls it as it starts (the library, imported, leaves a host process's allocator
alone). A process then holds on to its peak memory until it exits, as those allocators do. Nothing is computed
differently: the results are the same to the bit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h: free memory at the heap's top beyond this goes back to the kernel
M_MMAP_MAX = -4  # how many blocks may be mmapped at once (0: none, every block from the heap)
KEEP = 2**31 - 1  # the largest threshold mallopt takes (an int): a freed peak of up to 2 GiB is kept


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, where this process runs on it; else None (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc has it, musl does not
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Every block from the heap, none mmapped, and freed memory kept in the process (up to 2 GiB at the heap's
    top) for the next allocation: True where glibc took both settings, False where this is not glibc."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP) == 1

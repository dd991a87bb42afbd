"""Keep freed memory in the process (glibc), so that large tensors freed at every step are not faulted back.

PyTorch's CPU allocator is plain ``malloc``. glibc serves every block above its mmap threshold (at most 32 MB
when it adapts it) with a fresh ``mmap`` and gives it back with ``munmap`` when freed, so a network's activations,
freed and allocated again at every batch, are zero-filled page by page by the kernel each time: an evaluation at
96x96 spent a third of its CPU time in the kernel (hundreds of millions of minor page faults). :func:`configure`
serves blocks up to 1 GiB from the heap and lets the heap keep up to 2 GiB of freed memory (instead of 128 KB),
so a step reuses the pages of the step before. The cost: freed memory is not handed back, so the resident set
also counts the heap's free blocks. :func:`release` hands them back (``malloc_trim``) between phases whose blocks
differ in size -- after the data is loaded, when an evaluation starts, after each evaluation network's training
and testing -- which keeps the peak near glibc's default at the price of faulting those pages back once per
phase.

Called once at start-up by :func:`common.cli.run_main` (every entry script); ``DDIF_MALLOC=default`` leaves
glibc's behaviour alone. A no-op where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap
TRIM_THRESHOLD = 2 ** 31 - 1  # (mallopt takes an int) give the top of the heap back only above 2 GiB free

_libc: dict = {}  # "libc": glibc once configure() has set the thresholds, None where it could not


def configure() -> bool:
    """Set the two thresholds once per process; True when glibc took them."""
    if "libc" in _libc:
        return _libc["libc"] is not None
    _libc["libc"] = None
    if sys.platform.startswith("linux") and os.environ.get("DDIF_MALLOC", "") != "default":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
                _libc["libc"] = libc
        except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
            pass
    return _libc["libc"] is not None


def release() -> None:
    """Hand the heap's free pages back to the kernel (glibc's ``malloc_trim(0)``), where :func:`configure` keeps
    them; otherwise nothing (glibc's default behaviour already gives large blocks back)."""
    if _libc.get("libc") is not None:
        _libc["libc"].malloc_trim(0)

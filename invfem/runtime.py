"""Process-level settings that the heavy dense work depends on.

:func:`reuse_freed_memory`: the exact-Hessian methods allocate and free several dense
``P x P`` matrices (6.8 MB each at P = 921) and per-point factors of a few MB per iteration.
glibc's malloc hands blocks above its (adaptive) mmap threshold back to the operating
system when they are freed, and trims the heap's free top, so the next allocation of the
same size is faulted in again page by page: 10,800 minor page faults per trust-exact
iteration of the 10x10 poisson_fem problem (measured with ``getrusage``), and none once freed
memory is kept for reuse. The same holds for the ``(Q, P)`` network Jacobian of a residual
Jacobian (40 MB at 30x30 P1, 921 parameters): faulting it in cost more than filling it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2**30               # blocks up to 1 GiB from the heap (glibc >= 2.26 accepts any value)
FALLBACK_MMAP_THRESHOLD = 32 * 2**20  # the largest value older glibc accepts on 64-bit systems
TRIM_THRESHOLD = 512 * 2**20

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process for reuse: blocks up to 1 GiB (32 MB on a glibc that
    refuses more) come from the heap (not from fresh ``mmap`` pages) and up to 512 MB of free
    heap top is kept rather than returned to the system. Idempotent and process-wide; called by :func:`invfem.minimize`
    and the ``invfem`` command. Returns whether the setting is in effect: False on a C
    library other than glibc (nothing is changed there)."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):          # musl and others: no mallopt
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            threshold = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) or bool(
                mallopt(_M_MMAP_THRESHOLD, FALLBACK_MMAP_THRESHOLD))
            _applied = threshold and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied

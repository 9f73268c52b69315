"""Memory estimates before allocation: a size that cannot fit is a one-line error, not a MemoryError
minutes later (or a machine that swaps itself to a halt).

:func:`check_memory` compares an estimate with the memory this machine has available
(``MemAvailable`` of ``/proc/meminfo``, else the physical memory) and raises
:class:`ResourceError` naming the option, the estimate and what is available. The environment
variable ``INVFEM_MAX_MEMORY`` overrides the limit (``64G``, ``512M``, bytes) or switches the
check off (``off``): it reaches the worker processes of a study as well.

The estimates are deliberately rough (within a small factor): they only have to tell a
configuration that fits from one that is off by orders of magnitude.
"""

from __future__ import annotations

import os
import re

from invfem.errors import ConfigError

ENV = "INVFEM_MAX_MEMORY"

#: bytes per mesh triangle once a P1/P2 space with its quadrature, basis and sparsity pattern is built
#: (peak RSS measured with scikit-fem on a 200x200 square: 1.9 kB for P1, 7.4 kB for P2; with margin)
BYTES_PER_TRIANGLE = 5_000
#: bytes per observation point (its probe row in B, the point, the value and the lookups)
BYTES_PER_POINT = 400


class ResourceError(ConfigError):
    """An option whose memory estimate exceeds what the machine has (see :func:`check_memory`)."""


def available_memory() -> int:
    """Bytes this machine can give a new allocation now (``MemAvailable``; the physical memory where
    /proc is absent)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def memory_limit() -> int | None:
    """The limit :func:`check_memory` applies: ``INVFEM_MAX_MEMORY`` (None for ``off``) or the available memory."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return available_memory()
    if value.lower() in ("off", "none", "0"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?", value)
    if not match:
        raise ConfigError(f"{ENV}={value!r}: expected a size such as 64G or 512M, or off")
    scale = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def human(nbytes: float) -> str:
    """``1.5 GB`` style."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(nbytes) < 1024 or unit == "PB":
            return f"{nbytes:.3g} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.3g} EB"


def check_memory(what: str, nbytes: float, alternative: str = "") -> None:
    """ResourceError when ``nbytes`` (the estimate for ``what``, which names the option and its
    value) exceeds the limit; ``alternative`` says what to do instead."""
    limit = memory_limit()
    if limit is None or nbytes <= limit:
        return
    hint = f"; {alternative}" if alternative else ""
    raise ResourceError(f"{what} needs about {human(nbytes)} of memory, {human(limit)} available{hint} "
                        f"(set {ENV} to override)")


def mesh_memory(n_triangles: float, order: int = 1) -> float:
    """Bytes of a mesh of ``n_triangles`` with its function space."""
    return float(n_triangles) * BYTES_PER_TRIANGLE * (3 if order == 2 else 1)


def network_parameters(widths) -> int:
    """Parameters of an MLP with layer sizes ``widths`` (inputs, hidden..., outputs), biases included."""
    widths = [int(w) for w in widths]
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def network_memory(widths, n_points: float) -> float:
    """Bytes of one network pass with its derivatives at ``n_points``: the weights and, per point,
    the activations of every layer (a few copies for the gradient and the structured Hessian)."""
    widths = [int(w) for w in widths]
    return 8.0 * (4 * network_parameters(widths) + 6 * float(n_points) * sum(widths))


#: the peak memory of forming a P x P Hessian and its spectrum, in copies of the matrix: the matrix, its
#: symmetrized copy, the eigenvectors and LAPACK's workspace (measured, poisson_fem 10x10, P = 1801 / 3901 /
#: 6801: a peak rise of 4.7 / 4.9 / 4.5 x 8 P^2 bytes over the gradient's; tests/test_scale.py)
HESSIAN_COPIES = 5


def hessian_memory(n_params: int) -> float:
    """Bytes of a dense ``P x P`` Hessian with its eigendecomposition (:data:`HESSIAN_COPIES` copies)."""
    return HESSIAN_COPIES * 8.0 * float(n_params) ** 2


def check_dense_hessian(n_params: int, needed_by: str) -> None:
    """ResourceError when the ``P x P`` Hessian that ``needed_by`` (the option asking for it) forms
    cannot fit; the matrix-free alternative is named."""
    check_memory(f"{needed_by}: the {n_params} x {n_params} Hessian", hessian_memory(n_params),
                 "Hessian-vector products need no P x P matrix: method trust-krylov or trust-ncg, "
                 "hessian_at_start/hessian_at_end false, no laplace_samples")


#: the structured Hessian's wall time over its network bound 2 P^2 Q at :func:`gemm_rate` (measured on the
#: 2-core VM, poisson_fem: P = 3441 / 3901, Q = 5400 / 15000: 0.88-1.01x; the bound counts the GEMMs only)
HESSIAN_OVER_BOUND = 1.0

_GEMM_RATE: dict = {}


def gemm_rate(n: int = 512) -> float:
    """This machine's float64 matrix-product rate (flop/s), timed once per process on an n x n product."""
    if "rate" not in _GEMM_RATE:
        import time

        import torch
        a = torch.rand(n, n, dtype=torch.float64)
        a @ a                                                  # warm the BLAS threads
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - start)
        _GEMM_RATE["rate"] = 2.0 * n ** 3 / max(best, 1e-9)
    return _GEMM_RATE["rate"]


def hessian_seconds(n_params: int, n_points: int | None) -> float | None:
    """An estimate of the structured P x P Hessian's wall time: ``HESSIAN_OVER_BOUND`` times its
    network bound ``2 P^2 Q`` at :func:`gemm_rate` (None without the number of points Q)."""
    if not n_points:
        return None
    return HESSIAN_OVER_BOUND * 2.0 * float(n_params) ** 2 * float(n_points) / gemm_rate()

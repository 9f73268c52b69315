"""Hessian-vector products: invfem's ``hvp`` (reverse-over-reverse on plain tensors) against
forward-over-reverse ``torch.func.jvp(grad(f))``, and a gradient, measured interleaved in one run.

    python benchmarks/hvp_cost.py [--repeat 5]

Problems: reference 003's neural ODE (252 parameters, 58 RK4 steps of a one-point network)
and reference 001's regression (1131 parameters, 10,000 points). Prints the median seconds
per call, the ratio forward-over-reverse / ``hvp``, ``hvp`` / gradient, and the relative
difference of the two products (they must agree to round-off).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from invfem.derivatives import hvp, value_and_grad
from invfem.experiment.run import load_problem

CASES = [("neural_ode", {}), ("regression", {"target": "sin5", "n_points": 10000, "interval": [-1.1, 1.1]})]


def _median_time(fn, repeat: int) -> float:
    fn()                                    # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print("| problem | P | gradient s | hvp s (reverse-over-reverse) | jvp(grad) s | jvp(grad) / hvp | "
          "hvp / gradient | rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, options in CASES:
        p = load_problem(name, seed=0, **options)
        theta = p.theta0
        v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(0), dtype=theta.dtype)
        forward = lambda: torch.func.jvp(torch.func.grad(p.loss), (theta,), (v,))[1]   # noqa: E731
        t_grad = _median_time(lambda: value_and_grad(p.loss, theta), args.repeat)
        t_hvp = _median_time(lambda: hvp(p.loss, theta, v), args.repeat)
        t_fwd = _median_time(forward, args.repeat)
        a, b = hvp(p.loss, theta, v), forward()
        diff = float(torch.linalg.norm(a - b) / torch.linalg.norm(b))
        print(f"| {name} | {theta.numel()} | {t_grad:.4f} | {t_hvp:.4f} | {t_fwd:.4f} | {t_fwd / t_hvp:.1f} | "
              f"{t_hvp / t_grad:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()

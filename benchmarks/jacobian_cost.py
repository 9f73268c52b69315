"""The closed-form residual Jacobian against a gradient, and against jacrev through the solve.

    python benchmarks/jacobian_cost.py [--sizes 10 30] [--repeat 15] [--threads 1]

For ``poisson_fem`` (and the other reference-000 problems at 10x10) at each mesh size: the
median wall time of ``problem.jacobian`` (the network's closed-form J, or its factors applied
to the sparse coupling where J would be large, and one P-column sensitivity solve), of one
gradient (``value_and_grad`` of the loss: forward solve, adjoint solve, network backward),
and of ``torch.func.jacrev(problem.residual)`` (autograd through the sparse solve, one VJP
per residual). Gradient and Jacobian are interleaved (one of each per round) in one process
with freed memory kept for reuse, as ``minimize`` and ``least_squares`` run. Targets
(issue 17): Jacobian <= 3 gradients at 10x10 and <= 5 at 30x30."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from invfem.derivatives import value_and_grad
from invfem.experiment.run import load_problem
from invfem.runtime import reuse_freed_memory


def median_times(fns, repeat):
    """Median wall time of each function, called in turn (one of each per round): a slow patch
    of the machine hits all of them alike, so their ratios hold better than their times."""
    for fn in fns:
        fn()                                        # warm: factorization cache, allocations
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 30])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reuse_freed_memory()              # as minimize and least_squares do: freed blocks are reused, not faulted in
    cases = [("poisson_fem", n) for n in args.sizes] + [("heat_residual", 10), ("poisson_residual", 10)]
    print(f"{args.threads} thread(s), median of {args.repeat}\n")
    print("| problem | mesh | residuals x parameters | gradient (ms) | jacobian (ms) | jacobian / gradient | "
          "jacrev through the solve (ms) | jacrev / jacobian |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n in cases:
        p = load_problem(name, seed=0, n=n)
        theta = p.theta0
        m = p.residual(theta).numel()
        t_grad, t_jac = median_times([lambda: value_and_grad(p.loss, theta), lambda: p.jacobian(theta)],
                                     args.repeat)
        t_rev = median_times([lambda: torch.func.jacrev(p.residual)(theta)], max(1, args.repeat // 5))[0] \
            if m * p.n_params < 2e6 else float("nan")
        print(f"| {name} | {n}x{n} | {m} x {p.n_params} | {1e3 * t_grad:.3g} | {1e3 * t_jac:.3g} | "
              f"{t_jac / t_grad:.2f} | {1e3 * t_rev:.3g} | {t_rev / t_jac:.1f} |", flush=True)


if __name__ == "__main__":
    main()

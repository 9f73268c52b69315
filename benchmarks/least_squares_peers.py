"""invfem's ``least_squares`` against ``scipy.optimize.least_squares`` on the same residuals and Jacobians.

    python benchmarks/least_squares_peers.py [--repeat 3] [--methods trf dogbox lm] [--threads 1] [--skip heat_residual]

Problems: reference 000's three (``poisson_fem``, ``heat_residual``, ``poisson_residual`` at
10x10, seed 0, their closed-form Jacobians) and classical residual problems (Rosenbrock,
Powell singular, Brown–Dennis, Osborne; bounded variants for trf and dogbox). Both solvers
get the same callables (scipy's wrapped to numpy) and default tolerances (1e-8); each pair
is run ``--repeat`` times, interleaved (ours, scipy, ours, ...), and the median wall time is
reported. Columns: residual evaluations (nfev), Jacobians (njev: one per accepted step, the
iterations), total time, time per iteration (total / njev), their ratio (ours / scipy: the
target is <= 1 for trf) and the final cost.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize
import torch

from invfem.errors import InvalidTrialPoint
from invfem.experiment.run import load_problem
from invfem.optim.classical import LEAST_SQUARES
from invfem.optim.least_squares import least_squares


def cases(methods, skip=()):
    out = []
    for name, options in (("poisson_fem", {"n": 10}), ("heat_residual", {"n": 10}),
                          ("poisson_residual", {"n": 10, "noise": 0.1})):
        if name in skip:
            continue
        p = load_problem(name, seed=0, **options)
        out.append((name, p.residual, p.jacobian, p.theta0, None))
    for p in LEAST_SQUARES:
        jac = torch.func.jacfwd(p.fun)
        out.append((p.name, p.fun, jac, p.start(), None))
        out.append((p.name + " (bounded)", p.fun, jac, p.start(), p.bounds))
    return [(c, m) for c in out for m in methods if not (m == "lm" and c[4] is not None)]


def _numpy_residual(fun, x, m):
    """scipy's view of the residual: inf where the loss is undefined (kappa <= 0 at a trial point),
    which scipy's trf rejects like invfem's loop does."""
    try:
        return fun(torch.as_tensor(x)).numpy()
    except InvalidTrialPoint:
        return np.full(m, np.inf)


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["trf", "dogbox", "lm"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], help="problems to leave out (e.g. heat_residual: minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| problem | method | nfev (invfem / scipy) | njev = iterations | total time, ms (invfem / scipy) | "
          "time per iteration, ms | ratio per iteration | final cost (invfem / scipy) |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, fun, jac, x0, bounds), method in cases(args.methods, args.skip):
        kwargs = {} if bounds is None else {"bounds": bounds}
        f_np = lambda x, fun=fun, m=int(fun(x0).numel()): _numpy_residual(fun, x, m)
        j_np = lambda x, jac=jac: jac(torch.as_tensor(x)).numpy()
        ours_t, ref_t = [], []
        if method == "lm" and int(fun(x0).numel()) < x0.numel():       # scipy's lm refuses m < n
            ours, t = timed(lambda: least_squares(fun, x0, jac=jac, method=method, **kwargs))
            print(f"| {name} | {method} | {ours.nfev} / – | {ours.njev} / – | {1e3 * t:.3g} / – | "
                  f"{1e3 * t / ours.njev:.3g} / – | – (scipy refuses m < n) | {ours.cost:.4g} / – |", flush=True)
            continue
        for _ in range(args.repeat):
            ours, t = timed(lambda: least_squares(fun, x0, jac=jac, method=method, **kwargs))
            ours_t.append(t)
            ref, t = timed(lambda: scipy.optimize.least_squares(f_np, x0.numpy(), jac=j_np, method=method, **kwargs))
            ref_t.append(t)
        total_ours, total_ref = np.median(ours_t), np.median(ref_t)
        per_ours, per_ref = total_ours / ours.njev, total_ref / ref.njev
        print(f"| {name} | {method} | {ours.nfev} / {ref.nfev} | {ours.njev} / {ref.njev} | "
              f"{1e3 * total_ours:.3g} / {1e3 * total_ref:.3g} | {1e3 * per_ours:.3g} / {1e3 * per_ref:.3g} | "
              f"{per_ours / per_ref:.2f} | {ours.cost:.4g} / {ref.cost:.4g} |", flush=True)


if __name__ == "__main__":
    main()

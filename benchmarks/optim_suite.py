"""Optimizer suite: every invfem method on classical test functions and a DNN-FEM loss,
side by side with scipy's trust-region methods measured in the same run.

    python benchmarks/optim_suite.py [--quick]

Prints, per problem and method: iterations, function / gradient / Hessian (dense Hessians
plus Hessian-vector products) evaluations, final ||g||, wall time, and for trust-exact,
trust-ncg, trust-krylov the same figures for scipy's method and the iteration ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize
import torch

from invfem.derivatives import hvp, value_and_grad
from invfem.optim import minimize
from invfem.optim.classical import CLASSICAL

SCIPY_TWINS = ("trust-exact", "trust-ncg", "trust-krylov")
METHODS = ("trust-exact", "trust-ncg", "trust-krylov", "trust-reflective", "saddle-free-newton", "newton-damped",
           "bfgs", "l-bfgs-b")


def run_scipy(fun, x0, method, maxiter):
    def fg(x):
        f, g = value_and_grad(fun, torch.as_tensor(x))
        return float(f), g.numpy()

    if method == "trust-exact":
        kw = {"hess": lambda x: torch.func.hessian(fun)(torch.as_tensor(x)).numpy()}
    else:
        kw = {"hessp": lambda x, v: hvp(fun, torch.as_tensor(x), torch.as_tensor(v)).numpy()}
    start = time.perf_counter()
    res = scipy.optimize.minimize(fg, x0.numpy(), jac=True, method=method,
                                  options={"gtol": 1e-8, "maxiter": maxiter}, **kw)
    elapsed = time.perf_counter() - start
    return res.nit, res.nfev, res.njev, getattr(res, "nhev", 0), float(np.linalg.norm(res.jac)), elapsed, res.success


def row(problem, method, res, elapsed, twin=None):
    gnorm = float(torch.linalg.norm(res.jac))
    line = (f"{problem:<16} {method:<19} {res.nit:5d} {res.nfev:5d} {res.njev:5d} {res.nhev:6d} {gnorm:9.1e} "
            f"{elapsed:8.3f}  {'ok ' if res.success else 'NO '}")
    if twin is not None:
        nit, nfev, njev, nhev, g, t, ok = twin
        line += (f"| {nit:5d} {nfev:5d} {njev:5d} {nhev:6d} {g:9.1e} {t:8.3f} {'ok ' if ok else 'NO '} "
                 f"{res.nit / max(nit, 1):6.2f}")
    return line


def classical_suite(maxiter):
    header = (f"{'problem':<16} {'method':<19} {'nit':>5} {'nfev':>5} {'njev':>5} {'nhev':>6} {'|g|':>9} "
              f"{'time s':>8}  conv | {'scipy':>5} {'nfev':>5} {'njev':>5} {'nhev':>6} {'|g|':>9} {'time s':>8} conv "
              f"{'nit/scipy':>9}")
    print(header)
    print("-" * len(header))
    ratios = {m: [] for m in SCIPY_TWINS}
    for tf in CLASSICAL:
        for method in METHODS:
            options = {"maxiter": maxiter}
            start = time.perf_counter()
            res = minimize(tf.fun, tf.start(), method=method, options=options)
            elapsed = time.perf_counter() - start
            twin = run_scipy(tf.fun, tf.start(), method, maxiter) if method in SCIPY_TWINS else None
            if twin is not None and twin[-1]:
                ratios[method].append(res.nit / max(twin[0], 1))
            print(row(tf.name, method, res, elapsed, twin))
        print()
    print("iteration ratio invfem/scipy over problems scipy solved (max, geometric mean):")
    for m, r in ratios.items():
        print(f"  {m:<13} max {max(r):.2f}  gmean {np.exp(np.mean(np.log(r))):.2f}  ({len(r)} problems)")


def dnn_fem_suite(maxiter):
    """Reference 000 set-up at a small size: trust region vs quasi-Newton vs Adam on one loss."""
    from invfem.problems.poisson_fem import make_problem

    problem = make_problem(n=10, seed=0)
    print(f"\nDNN-FEM poisson (10x10 P1, {problem.n_params} parameters), budget {maxiter} iterations "
          f"(adam: 20x the budget)")
    print(f"{'method':<19} {'nit':>5} {'nfev':>5} {'njev':>5} {'nhev':>6} {'loss':>10} {'|g|':>9} {'time s':>8}")
    for method, options in (("trust-exact", {"maxiter": maxiter}), ("trust-ncg", {"maxiter": maxiter}),
                            ("trust-krylov", {"maxiter": maxiter}), ("bfgs", {"maxiter": maxiter}),
                            ("l-bfgs-b", {"maxiter": maxiter}), ("adam", {"maxiter": 20 * maxiter, "lr": 1e-3})):
        hess = problem.hessian if method == "trust-exact" else None
        start = time.perf_counter()
        res = minimize(problem.loss, problem.theta0, method=method, options=options, hess=hess)
        elapsed = time.perf_counter() - start
        print(f"{method:<19} {res.nit:5d} {res.nfev:5d} {res.njev:5d} {res.nhev:6d} {res.fun:10.3e} "
              f"{float(torch.linalg.norm(res.jac)):9.1e} {elapsed:8.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="classical functions only")
    parser.add_argument("--fem-iterations", type=int, default=50)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    print(f"torch {torch.__version__}, scipy {scipy.__version__}, {torch.get_num_threads()} threads\n")
    classical_suite(maxiter=1000)
    if not args.quick:
        dnn_fem_suite(args.fem_iterations)


if __name__ == "__main__":
    main()

"""Low-rank Laplace at 10^4 parameters: time and accuracy of ``laplace(..., rank=r)`` without the P x P matrix.

    python benchmarks/low_rank_laplace.py [--n 100] [--widths 100 100] [--cases 100:0 200:0 100:1 200:0:1]
                                          [--train 40] [--alpha 1e-4]

``problem: poisson`` on an ``n x n`` unit square, kappa = 1 + 0.5 x^2 + 0.3 y observed at 500
random points with Gaussian noise sigma = 1e-2 (--noise), a softplus-positive tanh network ``2-widths-1``
(2-100-100-1: 10,501 parameters) with the prior ``alpha ||theta||^2``. Trained by trust-krylov
for ``--train`` iterations on the structured Hessian-vector product, then for each rank and
number of power iterations and passes (``--cases rank:power[:passes] ...``; ``passes`` 1 is the
single-pass eigensolver): ``low_rank_hessian`` of the misfit (the randomized double-pass
eigensolver on blocks of closed-form HVPs) and ``laplace`` from those pairs, with their times,
the products spent, the largest eigenpair residual and the a-posteriori norm-error estimate,
and the mean width of kappa's 95% band. Where the short training has not reached a minimum
(negative eigenvalues, Laplace refuses), the rest of Laplace is timed on the pairs with the
negative eigenvalues clipped to 0, and the table says so. Wall-clock on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--widths", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--cases", nargs="+", default=["100:0", "200:0", "100:1"],
                        help="rank:power-iterations[:passes] of the eigensolver (passes 1: single pass, 2 default)")
    parser.add_argument("--train", type=int, default=40, help="trust-krylov iterations before Laplace")
    parser.add_argument("--alpha", type=float, default=1e-2)
    parser.add_argument("--noise", type=float, default=1e-2)
    args = parser.parse_args()

    from invfem import minimize
    from invfem.diagnostics import laplace
    from invfem.diagnostics.laplace import NotAMinimumError
    from invfem.diagnostics.low_rank import low_rank_hessian
    from invfem.problems import poisson
    from invfem.runtime import reuse_freed_memory
    from invfem.structured import hessian_path

    reuse_freed_memory()
    problem = poisson.make_problem(
        0, mesh={"unit_square": {"n": args.n}}, regularization=args.alpha,
        network={"widths": list(args.widths), "activation": "tanh", "positivity": "softplus"},
        observations={"synthetic": {"kappa_true": "1 + 0.5*x^2 + 0.3*y", "at": 500, "noise": args.noise,
                                    "noise_kind": "gaussian", "data_seed": 0}})
    path = hessian_path(problem)
    start = time.perf_counter()
    trained = minimize(problem.loss, problem.theta0, method="trust-krylov", hessp=path.hessp,
                       options={"maxiter": args.train, "gtol": 1e-10})
    print(f"poisson {args.n}x{args.n}: {problem.n_params} parameters, {problem.info['n_quad']} points; "
          f"trust-krylov {trained.nit} iterations in {time.perf_counter() - start:.0f} s, |g| = "
          f"{trained.history[-1]['gnorm']:.2e}", flush=True)
    theta = trained.x
    print("\n| rank r | power iterations | passes | HVPs | eigensolver s | Laplace s (all) | max pair residual / lambda_1 | "
          "norm error estimate / lambda_1 | mean 95% band width |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        rank, power, passes = ([int(v) for v in case.split(":")] + [2])[:3]
        start = time.perf_counter()
        low = low_rank_hessian(problem, theta, rank, power_iterations=power, misfit=True, passes=passes)
        solver = time.perf_counter() - start
        note = ""
        try:
            result = laplace(problem, theta, rank=rank, low_rank=low)
        except NotAMinimumError:
            # a short training ends short of a minimum: the rest of Laplace timed on the pairs with their
            # negative eigenvalues clipped to 0 (said in the table)
            result = laplace(problem, theta, rank=rank, low_rank=replace(low, eigenvalues=low.eigenvalues.clamp(min=0)))
            note = f" ({int((low.eigenvalues < 0).sum())} negative pairs clipped: not a minimum)"
        width = f"{float(result.band_width_linearized.mean()):.3g}{note}"
        total = time.perf_counter() - start
        top = float(low.eigenvalues.abs().max())
        print(f"| {rank} | {power} | {passes} | {low.n_hvp} | {solver:.1f} | {total:.1f} | "
              f"{float(low.eigenvalue_errors.max()) / top:.2e} | {low.error_estimate / top:.2e} | {width} |",
              flush=True)


if __name__ == "__main__":
    main()

"""Lazy Hessians for trust-exact: what keeping the exact Hessian over several steps buys.

    python benchmarks/lazy_hessian.py [--problems poisson_fem heat_residual poisson_residual] [--seeds 0 1]
        [--every 1 3 5] [--threads 1]

Doikov, Chayti & Jaggi (ICML 2023) keep the Hessian for m steps and recompute only the
gradient. For each reference-000 problem and seed, trust-exact on the exact (structured)
Hessian with ``hessian_every`` = each of ``--every``, and m = 5 with ``hessian_refresh_rho``
0.5 (recompute early after a poorly predicted step), each stopped at the problem's threshold
(poisson_fem 1e-9, heat_residual 1e-6, poisson_residual 0.32: the studies' loss_threshold) or after 300 iterations.
Prints iterations, Hessians formed and wall time to the threshold (median [min, max]).
Rejected steps never recompute the Hessian, with or without this option.
"""

from __future__ import annotations

import argparse

import torch

from invfem.experiment.report import median_range, threshold_crossing
from invfem.experiment.run import load_problem
from invfem.optim import minimize

THRESHOLDS = {"poisson_fem": 1e-9, "heat_residual": 1e-6, "poisson_residual": 0.32}
OPTIONS = {"poisson_fem": {"n": 10}, "heat_residual": {"n": 10}, "poisson_residual": {"n": 10, "noise": 0.1}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--every", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [(f"hessian_every {m}", {"hessian_every": m}) for m in args.every]
    variants.append(("hessian_every 5, refresh at rho < 0.5", {"hessian_every": 5, "hessian_refresh_rho": 0.5}))
    print("| problem | variant | iterations to threshold | Hessians formed | time to threshold (s) |")
    print("|---|---|---|---|---|")
    for name in args.problems:
        threshold = THRESHOLDS[name]
        problems = [load_problem(name, seed=seed, **OPTIONS[name]) for seed in args.seeds]
        for label, options in variants:
            its, hessians, secs = [], [], []
            for p in problems:
                result = minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian,
                                  options={"gtol": 0, "maxiter": 300, **options},
                                  callback=lambda state: state["f"] <= threshold)
                seconds, iteration = threshold_crossing({"history": result.history}, threshold)
                its.append(iteration)
                secs.append(seconds)
                hessians.append(result.history[-1]["nhev"] if seconds is not None else None)
            never = sum(s is None for s in secs)
            print(f"| {name} | {label} | {median_range(its, '{:.0f}'.format)}{f' ({never} never)' if never else ''} | "
                  f"{median_range(hessians, '{:.0f}'.format)} | {median_range(secs, '{:.3g}'.format)} |", flush=True)


if __name__ == "__main__":
    main()

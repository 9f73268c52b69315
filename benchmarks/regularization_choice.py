"""How good is the alpha that ``regularization: auto`` chooses? The discrepancy principle and the
L-curve against the best alpha of the grid (known only because the true law is).

    python benchmarks/regularization_choice.py [--data-seeds 0 1 2] [--method trust-exact] [--maxiter 200]
                                               [--figure docs/regularization_choice.png]

Problem: ``problem: poisson`` on a 10x10 unit square, kappa_true = 1 + 0.5 x y + 0.3 sin(3 x),
40 random observation points with Gaussian noise sigma = 1e-3 (``data_seed`` varies the
points and the noise), a 2-20-20-1 tanh network (481 parameters), the default alpha grid
10^1 ... 10^-6. Every alpha is fitted once, from the largest down, each from the previous
fit's result (the continuation ``regularization: auto`` uses); the discrepancy choice (the
largest alpha with misfit <= N/2) and the L-curve corner are read off the same fits. Printed
per data seed: the table of alpha, misfit (against N/2), |theta|^2, kappa's relative L2
error, iterations, seconds; then each rule's alpha and kappa error against the best of the
grid, and the seconds all fits took. Iteration counts and the last digits of the errors
depend on round-off (BLAS build, thread count): compare rules within one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from invfem import minimize
from invfem.diagnostics import kappa_error
from invfem.experiment.regularization import DEFAULT_ALPHAS, AutoRegularization, choose_regularization
from invfem.files import save_figure
from invfem.problems import poisson
from invfem.structured import hessian_path


def options(alpha: float, data_seed: int) -> dict:
    return {"mesh": {"unit_square": {"n": 10}}, "network": {"widths": [20, 20]}, "regularization": alpha,
            "observations": {"synthetic": {"kappa_true": "1 + 0.5*x*y + 0.3*sin(3*x)", "noise": 1e-3,
                                           "noise_kind": "gaussian", "at": 40, "data_seed": data_seed}}}


def one_seed(data_seed: int, method: str, maxiter: int) -> dict:
    fit = lambda p, x0: minimize(p.loss, x0, method=method, options={"maxiter": maxiter},
                                 hess=hessian_path(p).function)
    spec = AutoRegularization(rule="l-curve", alphas=DEFAULT_ALPHAS)        # every alpha fitted
    record = choose_regularization(lambda a: poisson.make_problem(0, **options(a, data_seed)), fit, spec,
                                   error=kappa_error)
    level = poisson.make_problem(0, **options(1.0, data_seed)).info["misfit_expected"]
    reached = [i for i, m in enumerate(record["misfit"]) if m <= level]
    record["discrepancy_index"] = reached[0] if reached else len(record["alphas"]) - 1
    record["l_curve_index"] = record["alphas"].index(record["chosen"])
    record["best_index"] = int(np.argmin(record["error"]))
    record["level"] = level
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="trust-exact")
    parser.add_argument("--maxiter", type=int, default=200)
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    records = []
    for seed in args.data_seeds:
        r = one_seed(seed, args.method, args.maxiter)
        records.append(r)
        print(f"\ndata seed {seed}: N/2 = {r['level']:g}; {args.method}, maxiter {args.maxiter}; "
              f"all fits {r['seconds_total']:.1f} s")
        print("| alpha | misfit | |theta|^2 | kappa error | iterations | seconds |")
        print("|---|---|---|---|---|---|")
        for i, a in enumerate(r["alphas"]):
            marks = "".join(m for m, k in (("D", "discrepancy_index"), ("L", "l_curve_index"), ("*", "best_index"))
                            if r[k] == i)
            print(f"| {a:g} {marks} | {r['misfit'][i]:.4g} | {r['norm2'][i]:.4g} | {r['error'][i]:.3%} | "
                  f"{r['nit'][i]} | {r['seconds'][i]:.1f} |")
    print("\n| data seed | discrepancy: alpha, kappa error | L-curve: alpha, kappa error | best of the grid | "
          "no prior (alpha = 1e-6) |")
    print("|---|---|---|---|---|")
    for seed, r in zip(args.data_seeds, records):
        cell = lambda i: f"{r['alphas'][i]:g}, {r['error'][i]:.2%}"
        print(f"| {seed} | {cell(r['discrepancy_index'])} | {cell(r['l_curve_index'])} | {cell(r['best_index'])} | "
              f"{r['error'][-1]:.2%} |")
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    if args.figure:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.5))
        FigureCanvasAgg(fig)
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for seed, r in zip(args.data_seeds, records):
            line = left.loglog(r["misfit"], r["norm2"], "o-", markersize=3, label=f"data seed {seed}")[0]
            for key, marker in (("discrepancy_index", "D"), ("l_curve_index", "s")):
                i = r[key]
                left.loglog([r["misfit"][i]], [r["norm2"][i]], marker, color=line.get_color(), markersize=8,
                            fillstyle="none")
            right.loglog(r["alphas"], r["error"], "o-", color=line.get_color(), markersize=3)
            for key, marker in (("discrepancy_index", "D"), ("l_curve_index", "s")):
                i = r[key]
                right.loglog([r["alphas"][i]], [r["error"][i]], marker, color=line.get_color(), markersize=8,
                             fillstyle="none")
            left.axvline(r["level"], color="k", linestyle="--", linewidth=0.8)
        from matplotlib.ticker import NullFormatter
        left.xaxis.set_minor_formatter(NullFormatter())
        left.set_xlabel("misfit")
        left.set_ylabel("|theta|^2")
        left.set_title("L-curves (dashed: N/2; diamond: discrepancy, square: L-curve corner)", fontsize=8)
        left.legend(fontsize=7)
        right.set_xlabel("alpha")
        right.set_ylabel("relative L2 error of kappa")
        right.set_title("kappa error against alpha, the two choices marked", fontsize=8)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.28)
        save_figure(fig, args.figure, dpi=110)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()

"""Wall time to reference 000's thresholds: least squares and Gauss–Newton against L-BFGS-B and BFGS.

    python benchmarks/least_squares_wall_time.py [--problems poisson_fem heat_residual poisson_residual]
        [--seeds ...] [--budget 5000] [--threads 1] [--seconds S]

For each problem, in one process: the baselines (``l-bfgs-b``, ``bfgs``; gtol 0, ``--budget``
iterations) for every seed, then invfem's second-order least-squares methods (``trf`` exact
and with ``tr_solver="lsmr"``, ``lm`` on the closed-form residual Jacobian; ``trust-exact``
with the Gauss–Newton Hessian ``2 J^T J`` and with ``hessian: auto``), each stopped once its
loss is at the lowest level asked about for that seed (the threshold, or a baseline's final
loss), after 300 iterations or after ``--seconds`` of their own time. Prints, median
[min, max] over seeds:

* time (and iterations) to the study's threshold — poisson_fem 1e-9, heat_residual 1e-6,
  poisson_residual: the median final loss of L-BFGS-B at the budget (computed here first);
* for each baseline, the time each method needs to reach that baseline's final loss, as a
  fraction of the baseline's own time (target: <= 1/3);
* final loss and wall time (for the second-order methods: where they stopped).

Wall times are the methods' own (the history's ``time``), one torch and BLAS thread each
(``--threads``), as in the reference-000 studies. Round-off differs with the BLAS build and
the thread count: a run's iteration count can shift by a few; the spread over seeds is shown.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from invfem.experiment.report import median_range, threshold_crossing
from invfem.experiment.run import load_problem
from invfem.optim import minimize

THRESHOLDS = {"poisson_fem": 1e-9, "heat_residual": 1e-6, "poisson_residual": None}
OPTIONS = {"poisson_fem": {"n": 10}, "heat_residual": {"n": 10}, "poisson_residual": {"n": 10, "noise": 0.1}}
#: the seeds of the reference-000 studies (poisson_fem's seed 3 has kappa <= 0 at theta0)
SEEDS = {"poisson_fem": [0, 1, 2, 4, 5], "heat_residual": [0, 1, 2, 3, 4], "poisson_residual": [0, 1, 2, 3, 4]}
BASELINES = ("l-bfgs-b", "bfgs")
SECOND_ORDER = {
    "trf": ("trf", {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "maxiter": 300}),
    "trf (lsmr)": ("trf", {"tr_solver": "lsmr", "ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "maxiter": 300}),
    "lm": ("lm", {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "maxiter": 300}),
    "trust-exact (gauss-newton)": ("trust-exact", {"hessian": "gauss-newton", "gtol": 0, "maxiter": 300}),
    "trust-exact (auto)": ("trust-exact", {"hessian": "auto", "gtol": 0, "maxiter": 300}),
}


def run(problem, method, options, stop_at=None, seconds=None):
    """The run's history; ``stop_at``: stop once the loss is at or below it (the second-order
    methods stop at the lowest level this benchmark asks about, not at their budget), or after
    ``seconds`` of the method's own time."""
    dense = method == "trust-exact"
    callback = None if stop_at is None else (
        lambda state: state["f"] <= stop_at or (seconds is not None and state["time"] > seconds))
    result = minimize(problem.loss, problem.theta0, method=method, options=options,
                      hess=problem.hessian if dense else None, residual=problem.residual,
                      residual_jacobian=problem.solver_jacobian, callback=callback)
    return result.history


def crossing(history, level):
    """(iterations, seconds) to the first f <= level, or (None, None)."""
    seconds, iteration = threshold_crossing({"history": history}, level)
    return iteration, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the studies' (SEEDS)")
    parser.add_argument("--budget", type=int, default=5000, help="iterations of each baseline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop a second-order run after this many seconds of its own time")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.problems:
        histories = {m: [] for m in (*BASELINES, *SECOND_ORDER)}
        seeds = args.seeds or SEEDS[name]
        problems = {seed: load_problem(name, seed=seed, **OPTIONS[name]) for seed in seeds}
        for seed in seeds:
            for method in BASELINES:
                histories[method].append(run(problems[seed], method, {"maxiter": args.budget, "gtol": 0}))
        threshold = THRESHOLDS[name]
        if threshold is None:
            threshold = float(np.median([h[-1]["f"] for h in histories["l-bfgs-b"]]))
        for i, seed in enumerate(seeds):
            stop_at = min(threshold, *(histories[b][i][-1]["f"] for b in BASELINES))
            for label, (method, options) in SECOND_ORDER.items():
                histories[label].append(run(problems[seed], method, options, stop_at=stop_at, seconds=args.seconds))
        print(f"\n## {name}: threshold {threshold:.3g}, seeds {seeds}, baselines {args.budget} iterations, "
              f"{args.threads} thread(s)\n")
        head = "| method | iterations to threshold | time to threshold (s) | " + " | ".join(
            f"time to {b}'s final loss / {b}'s time" for b in BASELINES) + " | final loss | wall time (s) |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for label, runs in histories.items():
            hits = [crossing(h, threshold) for h in runs]
            its = [i for i, _ in hits if i is not None]
            secs = [t for _, t in hits if t is not None]
            fractions = []
            for b in BASELINES:
                fr = []
                for h, hb in zip(runs, histories[b]):
                    _, t = crossing(h, hb[-1]["f"])
                    fr.append(math.inf if t is None else t / hb[-1]["time"])
                fractions.append(median_range([f for f in fr if math.isfinite(f)], "{:.3f}".format)
                                 + (f" ({sum(not math.isfinite(f) for f in fr)} never)"
                                    if not all(math.isfinite(f) for f in fr) else ""))
            never = len(runs) - len(its)
            print(f"| {label} | {median_range(its, '{:.0f}'.format)}{f' ({never} never)' if never else ''} | "
                  f"{median_range(secs, '{:.3g}'.format)} | " + " | ".join(fractions) + " | "
                  f"{median_range([h[-1]['f'] for h in runs], '{:.2g}'.format)} | "
                  f"{median_range([h[-1]['time'] for h in runs], '{:.3g}'.format)} |", flush=True)


if __name__ == "__main__":
    main()

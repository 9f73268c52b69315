"""Cost against size: gradient, Hessian-vector product and the dense Hessian at 10^3 to 10^4
parameters and up to 3*10^5 quadrature points (poisson_fem, reference 000's FEM-coupled problem).

    python benchmarks/scale.py [--meshes 30 100] [--params 921 2661 5301 10501] [--big] [--repeat 3]
                               [--hessian-limit 30] [--figure docs/scale_cost.png] [--train SECONDS]

Per (mesh, network) case, each in a fresh process (so its peak memory is its own): the
gradient, the exact HVP the Krylov methods and the low-rank eigensolver use (the problem's
``hessian_path(problem).operator``: the closed-form directional network passes, the network's
state at theta built once per iterate; "first HVP" includes building it, "HVP" is each further
product at the same iterate, as a Krylov solve runs them), per direction in a block of 16, and
autograd's ``invfem.derivatives.hvp`` for comparison; medians of ``--repeat``; their ratios to
the gradient (the target of issue 21: HVP <= 3 gradients); the structured P x P Hessian's estimate (``invfem.resources.hessian_seconds``:
2 P^2 Q at this machine's GEMM rate) and, where that is under ``--hessian-limit`` seconds, its
measured time; the peak resident memory of the process. ``--train s``: then trust-krylov (and
trust-exact where its Hessian was measured) for ``s`` seconds of the method's time each, with
iterations, time per iteration, the first iteration and time at kappa errors 1e-2 and 1e-3, the
products spent and the peak memory. ``--big`` adds the 300x300 mesh with
the 921-parameter network. Networks: 2-20-20-20-1 (921), 2-35-35-35-1 (2661), 2-50-50-50-1 (5301),
2-100-100-1 (10501), tanh. Timings are wall-clock on whatever machine runs it; compare ratios
within one run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

#: kappa errors whose first iteration and time the --train runs report
TRAIN_LEVELS = (1e-2, 1e-3)

WIDTHS = {921: (2, 20, 20, 20, 1), 2661: (2, 35, 35, 35, 1), 5301: (2, 50, 50, 50, 1), 10501: (2, 100, 100, 1)}


def _median(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def one_case(n: int, params: int, repeat: int, hessian_limit: float, train_budget: float, queue) -> None:
    import torch

    from invfem.derivatives import hvp, value_and_grad
    from invfem.experiment.run import load_problem
    from invfem.resources import gemm_rate, hessian_seconds
    from invfem.runtime import reuse_freed_memory
    from invfem.structured import hessian_path

    reuse_freed_memory()
    problem = load_problem("poisson_fem", seed=0, n=n, widths=WIDTHS[params])
    theta = problem.theta0
    v = torch.randn(problem.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    value_and_grad(problem.loss, theta), hvp(problem.loss, theta, v)                    # warm
    gradient = _median(lambda: value_and_grad(problem.loss, theta), repeat)
    autograd = _median(lambda: hvp(problem.loss, theta, v), repeat)
    path = hessian_path(problem)
    first = _median(lambda: path.operator(theta)(v), repeat)
    apply = path.operator(theta)
    product = _median(lambda: apply(v), repeat)
    block = torch.randn(problem.n_params, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    apply(block)                                                                         # warm (vmap)
    per_direction = _median(lambda: apply(block), repeat) / 16
    estimate = hessian_seconds(problem.n_params, problem.info["n_quad"])
    measured = None
    if estimate <= hessian_limit:
        problem.hessian(theta)
        measured = _median(lambda: problem.hessian(theta), 1)
    training = []
    if train_budget > 0:
        from invfem.diagnostics.errors import kappa_error
        from scale_training import first_reached, train

        methods = ["trust-krylov"] + (["trust-exact"] if measured is not None else [])
        for method in methods:
            trace = [{"iter": 0, "time": 0.0, "kappa_error": kappa_error(problem, problem.theta0)}]
            result, trace = train(problem, method, {"maxiter": 100000}, train_budget, 1, trace)
            hits = {level: first_reached(trace, level) for level in TRAIN_LEVELS}
            training.append({"method": method, "nit": int(result.nit), "time": float(result.history[-1]["time"]),
                             "kappa_error": trace[-1]["kappa_error"], "nhev": int(result.nhev),
                             "reached": {str(k): None if v is None else [v["iter"], v["time"]] for k, v in hits.items()},
                             "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6})
    queue.put({"n": n, "training": training, "dofs": problem.info["n_dofs"], "Q": problem.info["n_quad"], "P": problem.n_params,
               "gradient": gradient, "hvp": product, "ratio": product / gradient, "first_hvp": first,
               "block_hvp": per_direction, "autograd_hvp": autograd, "autograd_ratio": autograd / gradient,
               "hessian_estimate": estimate,
               "hessian": measured, "hessian_bytes": 8.0 * problem.n_params ** 2, "gemm_gflops": gemm_rate() / 1e9,
               "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6})


def _slope(ps, rows, key) -> str:
    """`` (slope s)``: the least-squares slope of log(seconds) against log(P), where there are two points or more."""
    import numpy as np

    if len(ps) < 2:
        return ""
    return f" (slope {np.polyfit(np.log(ps), np.log([r[key] for r in rows]), 1)[0]:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--params", type=int, nargs="+", default=sorted(WIDTHS), choices=sorted(WIDTHS))
    parser.add_argument("--big", action="store_true", help="also 300x300 with 921 parameters")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hessian-limit", type=float, default=30.0)
    parser.add_argument("--figure", default=None)
    parser.add_argument("--json", default=None, help="write the rows here too")
    parser.add_argument("--train", type=float, default=0.0,
                        help="also train each case for this many seconds per method (trust-krylov; trust-exact "
                             "where its Hessian was measured) and report iterations and time to kappa errors")
    args = parser.parse_args()
    cases = [(n, p) for n in args.meshes for p in args.params] + ([(300, 921)] if args.big else [])
    context = multiprocessing.get_context("spawn")
    rows = []
    print("| mesh | dofs | Q | P | gradient s | HVP s | HVP / gradient | first HVP / gradient | block HVP / gradient | "
          "autograd HVP / gradient | P x P Hessian: estimate s | measured s | its memory | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, p in cases:
        queue = context.Queue()
        worker = context.Process(target=one_case, args=(n, p, args.repeat, args.hessian_limit, args.train, queue))
        worker.start()
        row = queue.get()
        worker.join()
        rows.append(row)
        measured = f"{row['hessian']:.2f}" if row["hessian"] is not None else "–"
        g = row["gradient"]
        print(f"| {n}×{n} | {row['dofs']} | {row['Q']} | {row['P']} | {g:.3f} | {row['hvp']:.3f} | "
              f"**{row['ratio']:.2f}** | {row['first_hvp'] / g:.2f} | {row['block_hvp'] / g:.2f} | "
              f"{row['autograd_ratio']:.2f} | {row['hessian_estimate']:.1f} | {measured} | "
              f"{row['hessian_bytes'] / 2**30:.2f} GiB | {row['peak_rss_gb']:.2f} |", flush=True)
    print(f"\nGEMM rate {rows[0]['gemm_gflops']:.1f} Gflop/s (float64, 512 x 512)")
    if args.train > 0:
        print(f"\nTraining, {args.train:g} s per method (the method's time; kappa error every iteration):\n")
        print("| mesh | P | method | iterations | s / iteration | kappa error 1e-2: iteration, s | "
              "1e-3: iteration, s | final kappa error | HVPs | peak RSS GB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            for t in row["training"]:
                at = lambda level: "–" if t["reached"][str(level)] is None else \
                    f"{t['reached'][str(level)][0]}, {t['reached'][str(level)][1]:.1f}"
                print(f"| {row['n']}×{row['n']} | {row['P']} | {t['method']} | {t['nit']} | "
                      f"{t['time'] / max(t['nit'], 1):.2f} | {at(1e-2)} | {at(1e-3)} | {t['kappa_error']:.2e} | "
                      f"{t['nhev']} | {t['peak_rss_gb']:.2f} |")
    if args.json:
        from invfem.files import write_json
        write_json(args.json, rows)
    if args.figure:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from invfem.files import save_figure
        fig = Figure(figsize=(9, 3.5))
        FigureCanvasAgg(fig)
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for n in sorted({r["n"] for r in rows}):
            sub = [r for r in rows if r["n"] == n]
            ps = [r["P"] for r in sub]
            left.loglog(ps, [r["gradient"] for r in sub], "o-", label=f"gradient, {n}x{n}{_slope(ps, sub, 'gradient')}")
            left.loglog(ps, [r["hvp"] for r in sub], "s--", label=f"HVP, {n}x{n}{_slope(ps, sub, 'hvp')}")
            left.loglog(ps, [r["autograd_hvp"] for r in sub], "x:", label=f"autograd HVP, {n}x{n}")
            right.loglog(ps, [r["hessian_estimate"] for r in sub], "o:",
                         label=f"Hessian estimate, {n}x{n}{_slope(ps, sub, 'hessian_estimate')}")
            done = [r for r in sub if r["hessian"] is not None]
            if done:
                right.loglog([r["P"] for r in done], [r["hessian"] for r in done], "k^", markersize=5)
        left.set_xlabel("parameters P")
        left.set_ylabel("seconds")
        left.legend(fontsize=7)
        left.set_title("gradient and HVP", fontsize=9)
        right.set_xlabel("parameters P")
        right.set_ylabel("seconds")
        right.legend(fontsize=7)
        right.set_title("P x P Hessian: 2 P^2 Q estimate (triangles: measured)", fontsize=9)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.28)
        save_figure(fig, args.figure, dpi=110)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()

"""Training at scale: the kappa error against wall time of a Krylov trust region at 10^4 parameters.

    python benchmarks/scale_training.py [--n 100] [--widths 100 100] [--method trust-krylov]
                                        [--maxiter 200] [--budget 600] [--every 5] [--options '{...}']
                                        [--json out.json]
    python benchmarks/scale_training.py --plot a.json b.json ... --figure docs/scale_training.png

poisson_fem on an ``n x n`` P1 mesh (reference 000's FEM-coupled problem, the full field
observed), a tanh network ``2-widths-1`` (2-100-100-1: 10,501 parameters), the method's exact
Hessian-vector products by the problem's own path (``invfem.structured.hessian_path``: the
closed-form directional network passes). Every ``--every`` iterations a callback records the
kappa error (relative L2 over the domain); the callback's time is not the method's (the
optimizer's clock pauses for it). Stops after ``--maxiter`` iterations or once the method's time
passes ``--budget`` seconds. Prints the first time each kappa error level was reached and the
trace; wall-clock on whatever machine runs it (the iteration counts depend on round-off).
``--plot``: the kappa error against the method's time of runs saved with ``--json``, one figure.
"""

from __future__ import annotations

import argparse
import json
import time


def train(problem, method: str, options: dict, budget: float, every: int, trace: list, log=None):
    """``method`` on ``problem`` with its exact derivatives by their fastest path, the kappa error
    appended to ``trace`` every ``every`` iterations (the callback's time is not the method's);
    stops after ``options["maxiter"]`` iterations or once the method's time passes ``budget``."""
    from invfem import minimize
    from invfem.diagnostics.errors import kappa_error
    from invfem.optim import METHODS
    from invfem.structured import hessian_path

    path = hessian_path(problem)

    def callback(state):
        if state["iter"] % every == 0:
            trace.append({"iter": state["iter"], "time": state["time"], "loss": state.get("f"),
                          "gnorm": state.get("gnorm"), "kappa_error": kappa_error(problem, state["x"])})
            if log is not None:
                log(f"  iter {state['iter']:4d}  {state['time']:7.1f} s  loss {state['f']:.3e}  "
                    f"kappa error {trace[-1]['kappa_error']:.3e}", flush=True)
        return state["time"] > budget

    result = minimize(problem.loss, problem.theta0, method=method, options={"gtol": 1e-12, **options},
                      callback=callback, **path.minimize_arguments(METHODS[method].derivatives))
    return result, trace


def first_reached(trace: list, level: float):
    """The first trace entry with a kappa error at or below ``level`` (None if none)."""
    return next((t for t in trace if t.get("kappa_error") is not None and t["kappa_error"] <= level), None)


def plot(paths, figure: str) -> None:
    """kappa error against the method's time for the runs saved in ``paths``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from invfem.files import save_figure
    fig = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for path in paths:
        with open(path) as fh:
            run = json.load(fh)
        trace = [t for t in run["trace"] if t.get("kappa_error") is not None]
        options = json.loads(run["args"]["options"])
        label = run["args"]["method"] + (" (" + ", ".join(f"{k}: {v}" for k, v in options.items()) + ")" if options else "")
        ax.semilogy([t["time"] for t in trace], [t["kappa_error"] for t in trace], ".-", ms=3, label=label)
    ax.axhline(1e-3, color="0.5", ls=":", lw=0.8)
    ax.set(xlabel="method's time (s)", ylabel="kappa error (relative L2)",
           title=f"poisson_fem {run['args']['n']}x{run['args']['n']}, {run['n_params']} parameters")
    ax.legend(fontsize=6)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)
    save_figure(fig, figure, dpi=110)
    print(f"figure: {figure}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--widths", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--method", default="trust-krylov")
    parser.add_argument("--maxiter", type=int, default=200)
    parser.add_argument("--budget", type=float, default=600.0, help="stop once the method's time passes it (s)")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--options", default="{}", help="method options as JSON")
    parser.add_argument("--levels", type=float, nargs="+", default=[1e-2, 3e-3, 1e-3, 3e-4])
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", nargs="+", default=None, help="saved --json runs to plot (then nothing runs)")
    parser.add_argument("--figure", default="scale_training.png")
    args = parser.parse_args()
    if args.plot:
        return plot(args.plot, args.figure)

    from invfem.diagnostics.errors import kappa_error
    from invfem.experiment.run import load_problem
    from invfem.runtime import reuse_freed_memory
    from invfem.structured import hessian_path

    reuse_freed_memory()
    start = time.perf_counter()
    problem = load_problem("poisson_fem", seed=0, n=args.n, widths=(2, *args.widths, 1))
    path = hessian_path(problem)
    print(f"poisson_fem {args.n}x{args.n}: {problem.n_params} parameters, {problem.info['n_quad']} points, "
          f"{problem.info['n_dofs']} dofs; {args.method} on the {path.product_kind} Hessian-vector product "
          f"(setup {time.perf_counter() - start:.1f} s)", flush=True)
    trace = [{"iter": 0, "time": 0.0, "kappa_error": kappa_error(problem, problem.theta0)}]
    result, trace = train(problem, args.method, {"maxiter": args.maxiter, **json.loads(args.options)}, args.budget,
                          args.every, trace, log=print)
    final = {"iter": int(result.nit), "time": float(result.history[-1]["time"]), "loss": float(result.fun),
             "kappa_error": kappa_error(problem, result.x), "nhev": int(result.nhev)}
    trace.append(final)
    print(f"\n{args.method}: {result.nit} iterations, {final['time']:.1f} s, {result.nhev} Hessian-vector products, "
          f"kappa error {final['kappa_error']:.3e} ({result.message})")
    print("\n| kappa error reached | iteration | time s |\n|---|---|---|")
    for level in args.levels:
        hit = first_reached(trace, level)
        print(f"| {level:g} | " + ("not reached | – |" if hit is None else f"{hit['iter']} | {hit['time']:.1f} |"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "n_params": problem.n_params, "trace": trace, "final": final}, fh, indent=1)


if __name__ == "__main__":
    main()

"""Training at scale: the kappa error against wall time of a Krylov trust region at 10^4 parameters.

    python benchmarks/scale_training.py [--n 100] [--widths 100 100] [--method trust-krylov]
                                        [--maxiter 200] [--budget 600] [--every 5] [--options '{...}']
                                        [--json out.json]

poisson_fem on an ``n x n`` P1 mesh (reference 000's FEM-coupled problem, the full field
observed), a tanh network ``2-widths-1`` (2-100-100-1: 10,501 parameters), the method's exact
Hessian-vector products by the problem's own path (``invfem.structured.hessian_path``: the
closed-form directional network passes). Every ``--every`` iterations a callback records the
kappa error (relative L2 over the domain); the callback's time is not the method's (the
optimizer's clock pauses for it). Stops after ``--maxiter`` iterations or once the method's time
passes ``--budget`` seconds. Prints the first time each kappa error level was reached and the
trace; wall-clock on whatever machine runs it (the iteration counts depend on round-off).
"""

from __future__ import annotations

import argparse
import json
import time


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
    args = parser.parse_args()

    from invfem import minimize
    from invfem.diagnostics.errors import kappa_error
    from invfem.experiment.run import load_problem
    from invfem.optim import METHODS
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

    def callback(state):
        if state["iter"] % args.every == 0:
            trace.append({"iter": state["iter"], "time": state["time"], "loss": state.get("f"),
                          "gnorm": state.get("gnorm"), "kappa_error": kappa_error(problem, state["x"])})
            print(f"  iter {state['iter']:4d}  {state['time']:7.1f} s  loss {state['f']:.3e}  "
                  f"kappa error {trace[-1]['kappa_error']:.3e}", flush=True)
        return state["time"] > args.budget

    derivatives = METHODS[args.method].derivatives
    options = {"maxiter": args.maxiter, "gtol": 1e-12, **json.loads(args.options)}
    result = minimize(problem.loss, problem.theta0, method=args.method, options=options, callback=callback,
                      hess=path.function if derivatives == "hessian" else None,
                      hessp=path.hessp if derivatives == "hvp" else None)
    final = {"iter": int(result.nit), "time": float(result.history[-1]["time"]), "loss": float(result.fun),
             "kappa_error": kappa_error(problem, result.x), "nhev": int(result.nhev)}
    trace.append(final)
    print(f"\n{args.method}: {result.nit} iterations, {final['time']:.1f} s, {result.nhev} Hessian-vector products, "
          f"kappa error {final['kappa_error']:.3e} ({result.message})")
    print("\n| kappa error reached | iteration | time s |\n|---|---|---|")
    for level in args.levels:
        hit = next((t for t in trace if t["kappa_error"] is not None and t["kappa_error"] <= level), None)
        print(f"| {level:g} | " + ("not reached | – |" if hit is None else f"{hit['iter']} | {hit['time']:.1f} |"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "n_params": problem.n_params, "trace": trace, "final": final}, fh, indent=1)


if __name__ == "__main__":
    main()

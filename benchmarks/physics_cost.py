"""Cost of the exact Hessian of every problem against its flop bound, and derivative costs.

    python benchmarks/physics_cost.py [--sizes 10 30] [--repeat 3]

Per problem and mesh: gradient and HVP times; the Hessian that ``problem.hessian`` picks
(the structured one for all five) with its factorizations / solve calls / right-hand
sides; and, measured in the same run and interleaved with it, its **bound**: float64
matrix products of the dense flops the structured Hessian must do —

* ``2 P^2 Q`` for the closed-form network part (a ``(P x Q) (Q x P)`` product), plus
* ``2 P^2 m`` for the PDE part, a ``(P x m) (m x P)`` product with ``m`` the inner dimension
  the benchmark states per problem: the free dofs ``n`` for ``poisson_fem``,
  ``poisson_residual`` and ``poisson_nonlinear_fem`` (state sensitivities / residual
  Jacobian ``S``, ``n x P``), ``n_steps x n`` for ``heat_fem`` and ``heat_residual``
  (one ``S^k`` per step).

Target (issue 8): Hessian / bound <= 4 for every problem at 30x30. On the smallest mesh the
generic batched Hessian is timed too and must agree to 1e-10. ``poisson_nonlinear_fem``'s
Hessian is timed cold (its Newton solve is forgotten first; in an optimizer it is shared
with the gradient at the same theta).
"""

from __future__ import annotations

import argparse
import importlib
import time

import torch

from invfem.derivatives import hessian, hvp, symmetry_error, value_and_grad
from _timing import interleaved

PROBLEMS = ("poisson_fem", "poisson_residual", "heat_residual", "heat_fem", "poisson_nonlinear_fem")


def inner_dimension(p) -> int:
    """The inner dimension of the PDE part's dense product (module docstring)."""
    return p.info["space"].n_free * p.info.get("n_steps", 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=64, help="HVP directions per batch for the generic Hessian")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; default MLPs (about 900 parameters)\n")
    header = (f"{'problem':<22} {'mesh':>6} {'P':>4} {'Q':>5} {'m':>6} {'grad s':>7} {'hvp s':>7} {'hess s':>7} "
              f"{'bound s':>7} {'hess/bound':>10} {'kind':>10} {'factor.':>7} {'solves':>6} {'rhs':>6} {'asym':>7} "
              f"{'generic s':>9} {'rel.diff':>8}")
    print(header)
    print("-" * len(header))
    for name in PROBLEMS:
        module = importlib.import_module(f"invfem.problems.{name}")
        for n in args.sizes:
            p = module.make_problem(n=n, seed=0)
            theta, n_params, n_quad, inner = p.theta0, p.n_params, p.info["n_quad"], inner_dimension(p)
            d = torch.randn(n_params, generator=torch.Generator().manual_seed(0))
            t_grad = interleaved({"g": lambda: value_and_grad(p.loss, theta)}, args.repeat)["g"]
            t_hvp = interleaved({"h": lambda: hvp(p.loss, theta, d)}, args.repeat)["h"]
            pde = p.info.get("pde")
            forget = pde.forget_state if pde is not None else (lambda: None)
            a, b = torch.randn(n_params, n_quad), torch.randn(n_quad, n_params)
            c, e = torch.randn(n_params, inner), torch.randn(inner, n_params)

            def structured():
                forget()
                return p.hessian(theta)

            times = interleaved({"hess": structured, "bound": lambda: (a @ b, c @ e)}, args.repeat)
            solver = p.info.get("solver")
            if solver is not None:
                solver.clear()
                solver.stats.reset()
            h = structured()
            counts = (f"{solver.stats.factorizations:7d} {solver.stats.solve_calls:6d} {solver.stats.rhs_solved:6d}"
                      if solver is not None else f"{'-':>7} {'-':>6} {'-':>6}")
            generic = diff = "-"
            if n == args.sizes[0]:
                start = time.perf_counter()
                h_generic = hessian(p.loss, theta, chunk_size=args.chunk)
                generic = f"{time.perf_counter() - start:9.2f}"
                rel = float(torch.linalg.norm(h - h_generic) / torch.linalg.norm(h_generic))
                assert rel < 1e-10, (name, n, rel)
                diff = f"{rel:8.1e}"
            print(f"{name:<22} {f'{n}x{n}':>6} {n_params:4d} {n_quad:5d} {inner:6d} {t_grad:7.4f} {t_hvp:7.4f} "
                  f"{times['hess']:7.3f} {times['bound']:7.3f} {times['hess'] / times['bound']:10.2f} "
                  f"{p.hessian_kind:>10} {counts} {symmetry_error(h):7.0e} {generic:>9} {diff:>8}", flush=True)


if __name__ == "__main__":
    main()

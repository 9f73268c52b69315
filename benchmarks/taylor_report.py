"""Taylor remainder rates (expected 1, 2, 3) of every differentiable piece and every problem loss.

    python benchmarks/taylor_report.py
"""

from __future__ import annotations

import importlib

import scipy.sparse as sp
import torch

from invfem.derivatives import taylor_test
from invfem.fem import FunctionSpace, stiffness_map, unit_square
from invfem.linalg import SparseSolver, SparsityPattern, sparse_solve
from invfem.problems.poisson_fem import make_problem


def main():
    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(0)
    pattern, values = SparsityPattern.from_scipy(sp.random(40, 40, density=0.1, random_state=0) + 4 * sp.eye(40))
    solver = SparseSolver(pattern)
    b, w = torch.randn(40, generator=gen), torch.randn(40, generator=gen)
    phi = lambda u: (w @ u) ** 2 + (u ** 3).sum()
    space = FunctionSpace(unit_square(6), 1)
    stiff = stiffness_map(space)
    ws = torch.randn(stiff.pattern.nnz, generator=gen)
    problem = make_problem(n=10, seed=0)
    d = torch.randn(problem.n_params, generator=gen)
    cases = {
        "sparse_solve wrt values": (lambda v: phi(sparse_solve(v, b, solver)), values, torch.randn(pattern.nnz, generator=gen), 1e-2),
        "sparse_solve wrt b": (lambda r: phi(sparse_solve(values, r, solver)), b, torch.randn(40, generator=gen), 1e-2),
        "stiffness map (P1)": (lambda k: torch.sin(ws @ stiff.values(k)) + (stiff.values(k) ** 3).sum(),
                               1 + space.quadrature_points[:, 0], torch.randn(space.n_quad, generator=gen), 1e-2),
        "poisson_fem loss (10x10, 921 params)": (problem.loss, problem.theta0, d / d.norm(), 5e-2),
    }
    # h0 per loss: small enough to be asymptotic in r0, large enough for r2 to stay above round-off
    for name, h0 in (("poisson_residual", 1e-3), ("heat_residual", 1e-2), ("poisson_nonlinear_fem", 1e-2),
                     ("heat_fem", 1e-2)):
        p = importlib.import_module(f"invfem.problems.{name}").make_problem(n=10, seed=0)
        d = torch.randn(p.n_params, generator=gen)
        cases[f"{name} loss (10x10, {p.n_params} params)"] = (p.loss, p.theta0, d / d.norm(), h0)
    print(f"{'function':46} {'rate r0':>8} {'rate r1':>8} {'rate r2':>8}   (min over 5 halvings)")
    for name, (f, x, direction, h0) in cases.items():
        r = taylor_test(f, x, direction, h0=h0)
        print(f"{name:46} " + " ".join(f"{m:8.3f}" for m in r.min_rates) + ("   ok" if r.passed() else "   FAIL"))


if __name__ == "__main__":
    main()

"""The structured Hessian against the generic batched one on small problems a new user builds.

    python benchmarks/small_cases.py [--repeat 3]

Issue 8 found a small L-shaped problem on which the structured Hessian was slower than the
generic one; after the closed-form network algebra it must never be. Cases: an L-shaped
P1 mesh with a few point observations built through the API (as a user would: scikit-fem
mesh, ``FunctionSpace``, ``LinearStateLoss`` + ``QuadraticMisfit``, ``CoefficientLoss``),
the same in P2, tiny networks (fewer parameters than points and the reverse), every shipped
problem on a 3x3 mesh. Printed: sizes, both times (median, interleaved), their ratio
generic/structured (>= 1 required) and the relative difference of the two Hessians.
"""

from __future__ import annotations

import argparse
import importlib

import numpy as np
import skfem
import torch

from invfem.derivatives import hessian
from invfem.fem import DirichletSystem, FunctionSpace, load_vector, stiffness_map
from invfem.fem.stationary import LinearStateLoss
from invfem.misfit import QuadraticMisfit
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss
from _timing import interleaved


def lshape_problem(refine: int, order: int, widths, n_obs: int = 12, seed: int = 0) -> Problem:
    """kappa_theta(x) on an L-shaped domain from a few noisy point values of u (nodal observations)."""
    mesh = skfem.MeshTri.init_lshaped().refined(refine)
    space = FunctionSpace(mesh, order)
    stiffness = stiffness_map(space)
    system = DirichletSystem.build(space, stiffness.pattern)
    load = load_vector(space, lambda x, y: torch.ones_like(x))
    rng = np.random.default_rng(seed)
    obs = torch.as_tensor(np.sort(rng.choice(space.free_dofs, min(n_obs, space.n_free), replace=False)))
    truth = LinearStateLoss(system, stiffness, load, lambda u: u.sum())
    xq = space.quadrature_points
    u_true = truth.solve(1.0 + 0.5 * torch.sin(3 * xq[:, 0]) * xq[:, 1] ** 2)
    data = u_true[obs] * (1 + 0.01 * torch.as_tensor(rng.standard_normal(obs.numel())))
    mlp = MLP(list(widths), shift=0.5)
    loss = CoefficientLoss(mlp, xq, LinearStateLoss(system, stiffness, load, QuadraticMisfit(obs, data)))
    return Problem("lshape", mlp.init(seed), loss, mlp, structure=loss,
                   info={"n_quad": space.n_quad, "n_dofs": space.n_dofs})


def cases():
    yield "L-shape P1, 2-20-20-20-1", lshape_problem(2, 1, (2, 20, 20, 20, 1))
    yield "L-shape P1, 2-8-8-1", lshape_problem(2, 1, (2, 8, 8, 1))
    yield "L-shape P2, 2-10-10-1", lshape_problem(1, 2, (2, 10, 10, 1))
    yield "L-shape P1 fine, 2-5-1", lshape_problem(4, 1, (2, 5, 1))
    for name in ("poisson_fem", "poisson_residual", "heat_residual", "heat_fem", "poisson_nonlinear_fem"):
        extra = {"n_steps": 5} if name.startswith("heat") else {}
        yield f"{name} 3x3", importlib.import_module(f"invfem.problems.{name}").make_problem(n=3, **extra)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    header = f"{'case':<28} {'P':>5} {'Q':>6} {'structured s':>12} {'generic s':>10} {'generic/struct':>14} {'rel.diff':>9}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(header)
    print("-" * len(header))
    worst = np.inf
    for label, p in cases():
        theta = p.theta0
        times = interleaved({"s": lambda: p.hessian(theta), "g": lambda: hessian(p.loss, theta)}, args.repeat)
        t_s, t_g = times["s"], times["g"]
        h, h_ref = p.hessian(theta), hessian(p.loss, theta)
        diff = float(torch.linalg.norm(h - h_ref) / torch.linalg.norm(h_ref))
        worst = min(worst, t_g / t_s)
        print(f"{label:<28} {p.n_params:>5} {p.info['n_quad']:>6} {t_s:12.4f} {t_g:10.4f} {t_g / t_s:14.1f} {diff:9.1e}",
              flush=True)
    print(f"\nsmallest generic/structured ratio: {worst:.1f} (>= 1 required)")


if __name__ == "__main__":
    main()

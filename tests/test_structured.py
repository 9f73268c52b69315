"""Structured exact Hessians of every problem against the generic batched Hessian, and the chooser."""

import importlib

import pytest
import torch

from invfem.derivatives import hessian, symmetry_error
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss, PositiveCoefficient, generic_linearization, hessian_path

PROBLEMS = ("poisson_fem", "poisson_residual", "heat_residual", "heat_fem", "poisson_nonlinear_fem")
# (widths after the input, activation, output transform): several architectures and transforms
NETWORKS = [((6, 5, 1), "tanh", None), ((7, 1), "gelu", "softplus"), ((5, 4, 3, 1), "sigmoid", "exp"),
            ((6, 1), "softplus", "square")]


def make(name, order=1, network=NETWORKS[0], n=3, **options):
    hidden, activation, positivity = network
    if name == "poisson_nonlinear_fem" and positivity is None:
        positivity = "softplus"              # kappa(u) > 0 along the Newton path
    n_in = 1 if name in ("poisson_residual", "poisson_nonlinear_fem") else 2
    extra = {"n_steps": 3} if name.startswith("heat") else {}
    return importlib.import_module(f"invfem.problems.{name}").make_problem(
        n=n, order=order, widths=(n_in, *hidden), activation=activation, positivity=positivity, seed=1,
        **extra, **options)


def relative(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: f"{n[1]}-{n[2]}-{len(n[0])}")
@pytest.mark.parametrize("name", PROBLEMS)
def test_structured_hessian_equals_generic(name, network, order):
    p = make(name, order, network)
    theta = p.theta0 + 0.05 * torch.randn(p.n_params, generator=torch.Generator().manual_seed(3))
    assert p.hessian_kind == "structured"
    h = p.hessian(theta)
    reference = hessian(p.loss, theta)
    assert relative(h, reference) < 1e-10
    assert symmetry_error(h) < 1e-12


@pytest.mark.parametrize("name", PROBLEMS)
def test_full_hessian_takes_one_factorization(name):
    p = make(name)
    solver = p.info.get("solver")
    if solver is None:                  # residual minimisation: no solve at all
        assert name.endswith("residual")
        return
    solver.clear()
    solver.stats.reset()
    p.hessian(p.theta0)
    assert solver.stats.factorizations == 1


@pytest.mark.parametrize("name", ["poisson_fem", "heat_fem"])
def test_fewer_points_than_parameters_takes_the_coefficient_space_path(name):
    """Q < P: the sensitivities come from Q solves (poisson_fem) or the J-based products; both exact."""
    p = make(name, n=2, network=((40, 30, 1), "tanh", None))
    assert p.info["n_quad"] < p.n_params
    assert relative(p.hessian(p.theta0), hessian(p.loss, p.theta0)) < 1e-10


@pytest.mark.parametrize("hidden", [(30, 1), (3, 1)], ids=["P>Q", "P<Q"])
def test_generic_linearization_of_an_outer_loss_without_structure(hidden):
    """An outer loss without ``linearize`` gets min(P, Q) coefficient-space HVPs: still exact."""
    points = torch.rand(17, 2, generator=torch.Generator().manual_seed(0))
    mlp = MLP([2, *hidden])
    target = torch.linspace(0.5, 2.0, 17)

    def outer(kappa):                    # couples the points: a dense W
        return ((kappa - target) ** 2).sum() * (1 + kappa.sum() ** 2) + torch.sin(kappa).prod()

    loss = CoefficientLoss(mlp, points, outer)
    theta = mlp.init(0) + 0.1
    assert relative(loss.hessian(theta), hessian(loss, theta)) < 1e-10
    lin = generic_linearization(outer, mlp(theta, points))
    torch.testing.assert_close(lin.gradient, torch.func.grad(outer)(mlp(theta, points)))


def test_chooser_falls_back_to_the_generic_hessian():
    points = torch.rand(9, 2)
    multi = MLP([2, 4, 2])                      # two outputs: no closed form
    loss = CoefficientLoss(multi, points, lambda k: (k ** 2).sum())
    p = Problem("toy", multi.init(0), loss, multi, structure=loss)
    assert p.hessian_kind == "generic" and hessian_path(p).kind == "generic"
    torch.testing.assert_close(p.hessian(p.theta0), hessian(loss, p.theta0))
    bare = Problem("bare", multi.init(0), loss, multi)
    assert bare.hessian_kind == "generic"
    single = MLP([2, 4, 1])
    structured = CoefficientLoss(single, points, lambda k: (k ** 3).sum())
    assert Problem("s", single.init(0), structured, single, structure=structured).hessian_kind == "structured"


@pytest.mark.parametrize("name", ["poisson_fem", "heat_fem", "poisson_nonlinear_fem"])
def test_misfit_without_closed_form_hessian(name):
    """A user's misfit (any torch function of the state) gets its curvature by batched HVPs."""
    import dataclasses

    p = make(name)
    structure = p.structure
    outer = structure.outer if hasattr(structure, "outer") else structure
    guarded = isinstance(outer, PositiveCoefficient)          # FEM-coupled: kappa > 0 checked first
    state_loss = outer.outer if guarded else outer
    quadratic = state_loss.misfit

    def quartic(u):                         # not quadratic, couples every observed entry
        r = u.reshape(-1)[quadratic.index] - quadratic.data
        return (r ** 2).sum() + (r ** 4).sum() + r.sum() ** 2

    swapped = dataclasses.replace(state_loss, misfit=quartic)
    if guarded:
        swapped = PositiveCoefficient(swapped, outer.describe)
    if hasattr(structure, "outer"):
        swapped = CoefficientLoss(structure.mlp, structure.points, swapped)
    theta = p.theta0 + 0.05
    assert relative(swapped.hessian(theta), hessian(swapped, theta)) < 1e-10


@pytest.mark.parametrize("name", PROBLEMS)
def test_the_hvp_the_krylov_methods_use_equals_the_structured_hessian_times_v(name):
    """Issue 21, deliver 1: trust-ncg / trust-krylov / the low-rank eigensolver run on
    invfem.derivatives.hvp (through sparse_solve's second-order rules, ~2.1-2.8 gradients:
    docs/performance.md); it must be the structured Hessian's product to round-off."""
    from invfem.derivatives import hvp

    p = make(name, 1, NETWORKS[1])
    gen = torch.Generator().manual_seed(4)
    theta = p.theta0 + 0.05 * torch.randn(p.n_params, generator=gen)
    h = p.hessian(theta)
    for _ in range(3):
        v = torch.randn(p.n_params, generator=gen, dtype=torch.float64)
        assert relative(hvp(p.loss, theta, v), h @ v) < 1e-12


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: f"{n[1]}-{n[2]}-{len(n[0])}")
@pytest.mark.parametrize("name", PROBLEMS + ("regression",))
def test_the_structured_hessian_operator_is_the_hessian_times_v(name, network):
    """Issue 21, deliver 1: the problem's Hessian-vector product (HessianPath.operator: the
    closed-form directional network passes for kappa(x), autograd's hvp for kappa(u)) on single
    vectors and blocks equals the dense structured Hessian times V, with Taylor rates 1, 2, 3."""
    from invfem.derivatives import taylor_test

    if name == "regression":       # an MSE outer loss; reference 002's network without an output bias
        p = importlib.import_module("invfem.problems.regression").make_problem(
            seed=1, widths=(1, *network[0]), activation=network[1], output_bias=False)
    else:
        p = make(name, 1, network)
    path = hessian_path(p)
    assert path.product_kind == ("generic" if name == "poisson_nonlinear_fem" else "structured")
    gen = torch.Generator().manual_seed(5)
    theta = p.theta0 + 0.05 * torch.randn(p.n_params, generator=gen)
    h = p.hessian(theta)
    apply = path.operator(theta)
    block = torch.randn(p.n_params, 4, generator=gen, dtype=torch.float64)
    assert relative(apply(block), h @ block) < 1e-12
    assert relative(apply(block[:, 1]), h @ block[:, 1]) < 1e-12
    result = taylor_test(p.loss, theta, block[:, 2], h0=1e-3, hessp=path.hessp)
    r0, r1, r2 = result.min_rates
    assert r0 > 0.8 and r1 > 1.95 and r2 > 2.9, result.rates

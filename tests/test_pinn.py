"""invfem.pinn: collocation, input derivatives, distance construction and PINN losses (issue 20)."""

import math

import numpy as np
import pytest
import torch
from torch.func import hessian as func_hessian
from torch.func import jacrev, vmap

from invfem.derivatives import hessian, symmetry_error, taylor_test
from invfem.errors import ConfigError
from invfem.experiment.run import load_problem
from invfem.nn import MLP
from invfem.optim import minimize
from invfem.pinn import (BoxDistance, PinnField, face_points, latin_hypercube, network_jet, space_time_points)


def _strata_filled(values, low, high):
    """Each of the n equal strata of [low, high] holds exactly one of the n values."""
    n = values.shape[0]
    k = np.floor((np.asarray(values) - low) / (high - low) * n).astype(int)
    return sorted(np.clip(k, 0, n - 1).tolist()) == list(range(n))


def test_latin_hypercube_has_one_point_per_stratum_in_every_coordinate():
    x = latin_hypercube(64, [0.0, -1.0, 2.0], [1.0, 1.0, 7.0], seed=3)
    assert x.shape == (64, 3) and x.dtype == torch.float64
    for i, (low, high) in enumerate([(0, 1), (-1, 1), (2, 7)]):
        assert _strata_filled(x[:, i], low, high)
    assert torch.equal(x, latin_hypercube(64, [0.0, -1.0, 2.0], [1.0, 1.0, 7.0], seed=3))     # reproducible
    assert not torch.equal(x, latin_hypercube(64, [0.0, -1.0, 2.0], [1.0, 1.0, 7.0], seed=4))
    rng = np.random.default_rng(0)
    plain = rng.random((64, 1))                       # a plain uniform sample does not fill every stratum
    assert not _strata_filled(plain[:, 0], 0, 1)
    with pytest.raises(ConfigError, match="lower < upper"):
        latin_hypercube(4, [1.0], [0.0])


def test_space_time_points_have_the_asked_boundary_fraction_on_the_faces():
    pts = space_time_points(1000, [0.0, 0.0], [1.0, 1.0], 5.0, boundary_fraction=0.2, initial_share=0.5, seed=0)
    assert pts.n_points == 1000
    assert pts.boundary.shape[0] + pts.initial.shape[0] == 200 and pts.initial.shape[0] == 100
    assert torch.all(pts.initial[:, 2] == 0)
    inside = pts.interior
    assert torch.all((inside[:, :2] > 0) & (inside[:, :2] < 1)) and torch.all((inside[:, 2] > 0) & (inside[:, 2] < 5))
    for k, (c, s) in enumerate(pts.faces):                       # every boundary point on its face
        on = pts.boundary[pts.face == k]
        assert on.shape[0] == 25 and torch.all(on[:, c] == float(s))
        assert _strata_filled(on[:, 2], 0.0, 5.0)                # LHS within the face, in time
    for i, (low, high) in enumerate([(0, 1), (0, 1), (0, 5)]):
        assert _strata_filled(inside[:, i], low, high)
    points, which = face_points(10, [0, 0], [2, 1], [(0, 0), (1, 1)])     # faces of measure 1 and 2
    assert (which == 0).sum() == 3 and (which == 1).sum() == 7 and torch.all(points[which == 1, 1] == 1)


@pytest.mark.parametrize("activation,positivity", [("tanh", None), ("sin", None), ("tanh", "softplus")])
def test_network_jet_equals_autograd_in_the_inputs(activation, positivity):
    mlp = MLP([3, 5, 4, 1], activation=activation, positivity=positivity, shift=0.25)
    theta = mlp.init(1) + 0.1 * torch.randn(mlp.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.rand(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    jet = network_jet(mlp, theta, x, (0, 1, 2), (0, 2))
    u = lambda p: mlp(theta, p[None])[0]
    torch.testing.assert_close(jet.value, mlp(theta, x), rtol=0, atol=1e-15)
    torch.testing.assert_close(jet.grad, vmap(jacrev(u))(x).T, rtol=0, atol=1e-14)
    h = vmap(func_hessian(u))(x)
    torch.testing.assert_close(jet.second, torch.stack([h[:, 0, 0], h[:, 2, 2]]), rtol=0, atol=1e-14)
    with pytest.raises(ConfigError, match="need their first derivatives"):
        network_jet(mlp, theta, x, (0,), (1,))


def test_the_laplacian_of_a_one_neuron_tanh_network_is_its_formula():
    mlp = MLP([2, 1, 1])                        # u = c tanh(w . x + b) + d
    w, b, c, d = torch.tensor([0.7, -1.3]), 0.2, 1.5, -0.4
    theta = torch.tensor([w[0], w[1], b, c, d], dtype=torch.float64)
    x = torch.rand(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    jet = network_jet(mlp, theta, x, (0, 1), (0, 1))
    t = torch.tanh(x @ w.double() + b)
    expected = c * (-2 * t * (1 - t ** 2)) * float(w.double().square().sum())     # c sigma''(z) |w|^2
    torch.testing.assert_close(jet.laplacian(), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(jet.d(1), c * (1 - t ** 2) * float(w[1]), rtol=0, atol=1e-15)


def test_the_distance_construction_vanishes_on_the_boundary_to_round_off():
    mlp = MLP([2, 6, 6, 1], activation="sin", omega=3.0, output_bias=False)
    field = PinnField(mlp, BoxDistance([-1.0, 0.0], [1.0, 2.0]))
    theta = mlp.init(0)
    edge, _ = face_points(200, [-1.0, 0.0], [1.0, 2.0], [(0, 0), (0, 1), (1, 0), (1, 1)], seed=1)
    assert float(field(theta, edge).abs().max()) < 1e-15
    inside = latin_hypercube(50, [-1.0, 0.0], [1.0, 2.0], seed=2)
    assert float(field(theta, inside).abs().min()) > 0
    jet = field.jet(theta, inside, (0, 1), (0, 1))                     # product rule against autograd
    u = lambda p: field(theta, p[None])[0]
    h = vmap(func_hessian(u))(inside)
    torch.testing.assert_close(jet.laplacian(), h[:, 0, 0] + h[:, 1, 1], rtol=0, atol=1e-12)
    basis = field.basis(theta, inside)                                # u = sum_k c_k (d phi_k)
    c = theta[-mlp.widths[-2]:]
    torch.testing.assert_close(basis.value @ c, field(theta, inside), rtol=0, atol=1e-14)
    with pytest.raises(ConfigError, match="linear output layer"):
        PinnField(MLP([2, 3, 1], positivity="softplus"), BoxDistance([0, 0], [1, 1]))


# each PINN problem, tiny, with its loss written plainly: nested torch.func in x
TINY = {
    "pinn_heat": dict(n_points=40, widths=[3, 4, 4, 1], test_points=50, fem_n=4, fem_dt=0.25),
    "pinn_elliptic_1d": dict(n_points=9, widths=[1, 4, 4, 1], test_points=11),
    "pinn_diffusion_reaction": dict(n_grid=4, widths=[2, 4, 3, 1], test_grid=5),
}


def _plain_loss(name, problem):
    mlp, info = problem.info["mlp"], problem.info
    if name == "pinn_heat":
        terms, lam, alpha = problem.loss.terms, info["lam"], info["alpha"]
        interior, bc, ic = terms["pde"].points, terms["bc"].points, terms["ic"].points
        hot, cold = terms["bc"]._g, terms["ic"]._g

        def loss(theta):
            u = lambda p: mlp(theta, p[None])[0]
            h, g = vmap(func_hessian(u))(interior), vmap(jacrev(u))(interior)
            r = g[:, 2] - alpha * (h[:, 0, 0] + h[:, 1, 1])
            return ((1 - lam) * torch.mean(r ** 2) + lam * torch.mean((mlp(theta, bc) - hot) ** 2)
                    + lam * torch.mean((mlp(theta, ic) - cold) ** 2))
        return loss
    points, f = info["points"], info["forcing"]
    c = 0.0 if name == "pinn_elliptic_1d" else 1.0
    lo, hi = (-1.0, 1.0) if name == "pinn_elliptic_1d" else (0.0, 1.0)

    def loss(theta):
        def u(p):
            d = torch.prod((p - lo) * (hi - p) * 4.0 / (hi - lo) ** 2)
            return d * mlp(theta, p[None])[0]
        h = vmap(func_hessian(u))(points)
        lap = torch.diagonal(h, dim1=1, dim2=2).sum(1)
        return torch.mean((-lap + c * vmap(u)(points) - f) ** 2)
    return loss


@pytest.mark.parametrize("name", sorted(TINY))
def test_pinn_losses_have_exact_second_derivatives(name):
    problem = load_problem(name, seed=0, **TINY[name])
    gen = torch.Generator().manual_seed(5)
    theta = problem.theta0 + 0.2 * torch.randn(problem.n_params, generator=gen, dtype=torch.float64)
    plain = _plain_loss(name, problem)
    assert abs(float(problem.loss(theta)) - float(plain(theta))) < 1e-12 * max(1.0, abs(float(plain(theta))))
    h = hessian(problem.loss, theta)
    reference = func_hessian(plain)(theta)
    scale = float(reference.abs().max())
    assert float((h - reference).abs().max()) < 1e-10 * max(1.0, scale)
    assert symmetry_error(h) < 1e-12
    result = taylor_test(problem.loss, theta, torch.randn(problem.n_params, generator=gen, dtype=torch.float64),
                         h0=1e-2 if name != "pinn_elliptic_1d" else 1e-3)
    first, second, third = result.rates[:, -1]                   # at the finest steps
    assert first > 0.9 and second > 1.9 and third > 2.8, result.rates
    r = problem.residual(theta)                                     # a sum of squares
    assert abs(float(r @ r) - float(problem.loss(theta))) < 1e-12 * float(problem.loss(theta))


def test_the_heat_problem_follows_the_reference_and_tests_against_the_fem_solution():
    problem = load_problem("pinn_heat", seed=0, n_points=500, test_points=2000, fem_n=16, fem_dt=0.05)
    assert problem.n_params == 2521                                 # the reference's count: five hidden layers of 24
    pts = problem.info["points"]
    assert pts.boundary.shape[0] + pts.initial.shape[0] == 100
    hot = problem.loss.terms["bc"]._g
    on_left_or_top = (pts.boundary[:, 0] == 0) | (pts.boundary[:, 1] == 1)
    assert torch.equal(hot.bool(), on_left_or_top)                 # u = 1 on top and left, 0 on bottom and right
    fem = problem.info["fem_at_test"]()
    assert float(fem.min()) >= -1e-12 and float(fem.max()) <= 1 + 1e-12 and 0.2 < float(fem.mean()) < 0.8
    xy = problem.info["test_points"]
    near_left = fem[xy[:, 0] < 0.05].mean()
    near_bottom = fem[xy[:, 1] < 0.05].mean()
    assert near_left > 0.8 > 0.2 > near_bottom                      # the boundary data, seen inside at t = 1
    error = problem.info["test_error"](problem.theta0)
    assert error > 0.3                                              # an untrained network is far from it
    with pytest.raises(ConfigError, match="lam must be in"):
        load_problem("pinn_heat", lam=1.5)


def test_the_unit_circle_has_a_minimum_and_a_maximum_both_stationary():
    found = []
    for start in (0.3, 3.0):
        problem = load_problem("unit_circle", target=[2.0, 1.0], theta0=start)
        result = minimize(problem.loss, problem.theta0, method="newton-exact", hess=lambda t: hessian(problem.loss, t),
                          options={"maxiter": 50, "gtol": 1e-13})
        second = float(hessian(problem.loss, result.x)[0, 0])
        found.append((float(result.x[0]) % (2 * math.pi), second))
    points = {p["kind"]: p for p in problem.info["stationary_points"]}
    (near_min, h_min), (near_max, h_max) = found
    assert abs(near_min - points["minimum"]["theta"] % (2 * math.pi)) < 1e-10 and h_min > 0
    assert abs(near_max - points["maximum"]["theta"] % (2 * math.pi)) < 1e-10 and h_max < 0
    assert abs(h_min - math.sqrt(5)) < 1e-10 and abs(h_max + math.sqrt(5)) < 1e-10          # +- |y|
    with pytest.raises(ConfigError, match="not the origin"):
        load_problem("unit_circle", target=[0.0, 0.0])


def test_definite_fraction_counts_what_cholesky_certifies():
    """Reference 002's Eq. 13 count against an independent criterion: a symmetric matrix is
    positive definite iff its Cholesky factorization exists (negative: that of -A)."""
    from invfem.diagnostics import definite_fraction
    assert definite_fraction(1, 1000)["fraction"] == 1.0                     # a 1 x 1 matrix is always definite
    result = definite_fraction(3, 4000, seed=7, batch=1000)
    gen = torch.Generator().manual_seed(7)
    positive = negative = 0
    for _ in range(4):                                                     # the same matrices, batch by batch
        a = torch.randn(1000, 3, 3, generator=gen, dtype=torch.float64).triu()
        a = a + a.triu(1).transpose(1, 2)
        assert torch.equal(a, a.transpose(1, 2))
        positive += int((torch.linalg.cholesky_ex(a).info == 0).sum())
        negative += int((torch.linalg.cholesky_ex(-a).info == 0).sum())
    assert (result["positive"], result["negative"]) == (positive, negative)
    assert 0 < result["fraction"] < 1
    assert definite_fraction(20, 2000)["fraction"] < definite_fraction(4, 2000)["fraction"]


# -- the closed-form curvature (invfem.pinn.curvature) ------------------------------------------

def _curvature_cases():
    """Losses covering every channel layout: the three problems, varying coefficients (heat and
    elliptic with grad alpha / grad kappa), a distance with SIREN and no output bias, gelu + shift."""
    from invfem.pinn import EllipticResidual, HeatResidual, PinnLoss, ValueTerm
    cases = {name: load_problem(name, seed=0, **TINY[name]).loss for name in sorted(TINY)}
    x = latin_hypercube(23, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], seed=4)
    alpha = lambda p: 0.5 + p[:, 0] * p[:, 1] ** 2 + torch.sin(p[:, 2])
    kappa = lambda p: 1.0 + p[:, 0] ** 2 + 0.3 * p[:, 1]
    cases["varying"] = PinnLoss(PinnField(MLP([3, 5, 4, 1])), {
        "heat": HeatResidual(x, alpha=alpha, f=lambda p: p[:, 0]),
        "elliptic": EllipticResidual(x, kappa=kappa, c=lambda p: p[:, 1], f=1.0, dims=(0, 1)),
        "value": ValueTerm(x[:5], 0.3)}, {"heat": 0.7, "elliptic": 0.2})
    siren = MLP([3, 5, 4, 1], activation="sin", omega=2.0, output_bias=False)
    cases["distance"] = PinnLoss(PinnField(siren, BoxDistance([0, 0, 0], [1, 1, 1])), {
        "heat": HeatResidual(x, alpha=0.3), "heat_varying": HeatResidual(x, alpha=alpha),
        "elliptic": EllipticResidual(x, kappa=kappa, c=2.0, dims=(0, 1, 2))})
    cases["gelu_shift"] = PinnLoss(PinnField(MLP([3, 5, 1], activation="gelu", shift=0.5)), {
        "heat": HeatResidual(x, alpha=0.3), "value": ValueTerm(x, lambda p: p[:, 0])})
    return cases


@pytest.mark.parametrize("case", ["pinn_diffusion_reaction", "pinn_elliptic_1d", "pinn_heat", "varying",
                                  "distance", "gelu_shift"])
def test_closed_form_pinn_derivatives_equal_autograd(case):
    loss = _curvature_cases()[case]
    assert loss.supported
    mlp = loss.field.mlp
    gen = torch.Generator().manual_seed(11)
    theta = mlp.init(1) + 0.2 * torch.randn(mlp.n_params, generator=gen, dtype=torch.float64)
    state = loss.curvature(theta, chunk=7)                      # several chunks per term
    value, grad = torch.func.grad_and_value(loss)(theta)[::-1]
    assert abs(state.value - float(value)) <= 1e-13 * abs(float(value))
    assert float((state.gradient() - grad).abs().max()) <= 1e-12 * float(grad.abs().max())
    reference = hessian(loss, theta)
    h = state.hessian()
    assert float((h - reference).abs().max()) <= 1e-11 * float(reference.abs().max())
    assert symmetry_error(h) < 1e-12
    products = state.hessian_products()                          # the R-operator's columns
    assert float((products - reference).abs().max()) <= 1e-11 * float(reference.abs().max())
    hbp = state.hessian_hbp(sub=3)                               # several sub-chunks per chunk
    assert float((hbp - reference).abs().max()) <= 1e-11 * float(reference.abs().max())
    block = torch.randn(mlp.n_params, 3, generator=gen, dtype=torch.float64)
    assert torch.allclose(state.apply(block), reference @ block, rtol=0, atol=1e-11 * float(reference.abs().max()))
    d = torch.randn(mlp.n_params, generator=gen, dtype=torch.float64)
    rates = taylor_test(loss, theta, d, h0=1e-3, hessp=lambda t, v: loss.curvature(t).apply(v)).rates[:, -1]
    assert rates[0] > 0.9 and rates[1] > 1.9 and rates[2] > 2.8, rates


@pytest.mark.parametrize("widths, bias", [([3, 4, 3, 4, 3, 1], True), ([3, 3, 4, 2, 3, 2, 1], False)])
def test_the_channel_hbp_hessian_holds_for_deeper_networks(widths, bias):
    """Four and five hidden layers: every cross-layer path of the HBP recursion (T over several layers)."""
    from invfem.pinn import EllipticResidual, HeatResidual, PinnLoss, ValueTerm
    x = latin_hypercube(17, [0, 0, 0], [1, 1, 1], seed=1)
    mlp = MLP(widths, output_bias=bias)
    loss = PinnLoss(PinnField(mlp), {"h": HeatResidual(x, alpha=0.2), "v": ValueTerm(x[:6], 1.0),
                                     "e": EllipticResidual(x, kappa=lambda p: 1 + p[:, 0], dims=(0, 1))})
    theta = mlp.init(3)
    reference = hessian(loss, theta)
    hbp = loss.curvature(theta, chunk=5).hessian_hbp(sub=4)
    assert float((hbp - reference).abs().max()) <= 1e-11 * float(reference.abs().max())


def test_closed_form_activation_jets_equal_forward_mode_ad_of_their_derivatives():
    from invfem.nn.mlp import ACTIVATIONS, sine
    from invfem.pinn.curvature import _higher_derivatives
    z = torch.linspace(-3, 3, 41, dtype=torch.float64)
    with_jet = [s for s in list(ACTIVATIONS.values()) + [sine(30.0)] if s.jet4 is not None]
    assert len(with_jet) >= 3                                  # tanh, sin, sin(30 z)
    for sigma in with_jet:
        closed, ad = _higher_derivatives(sigma, z), _higher_derivatives(sigma, z, closed=False)
        assert torch.allclose(closed[0], sigma.value(z), atol=1e-15)
        for a, b in zip(closed, ad):
            assert float((a - b).abs().max()) <= 1e-12 * max(1.0, float(b.abs().max()))


def test_the_residual_jacobian_of_every_chunk_equals_torch_func():
    """The Gauss-Newton part of the HBP Hessian: d r / d theta per chunk, in theta's layout."""
    from invfem.pinn import EllipticResidual, PinnLoss, ValueTerm
    mlp = MLP([2, 5, 4, 1], output_bias=False)
    x = torch.rand(9, 2, dtype=torch.float64)
    loss = PinnLoss(PinnField(mlp), {"e": EllipticResidual(x, kappa=2.0, c=1.0, dims=(0, 1)), "v": ValueTerm(x[:4], 0.5)})
    theta = mlp.init(0)
    state = loss.curvature(theta, chunk=4)
    rows = torch.cat([c.residual_jacobian(mlp.output_bias) for c in state.chunks])
    weights = torch.tensor([c.weight for c in state.chunks for _ in range(c.q)], dtype=torch.float64)
    reference = torch.func.jacrev(loss.residual)(theta)          # rows (w_i / n_i)^1/2 r_i
    assert rows.shape == reference.shape
    assert torch.allclose(weights.sqrt()[:, None] * rows, reference, atol=1e-13)


def test_a_krylov_method_takes_the_pinn_gradient_from_the_state_its_products_reuse():
    """hessian_path's ``"hvp"`` arguments for a PINN problem: ``jac`` is the closed-form gradient
    of the held state, which the products at that theta reuse (one state per iterate); trust-ncg
    with it follows the autograd-gradient run to round-off. A structure that is not the loss
    (a regularized one) gets no ``jac``."""
    from dataclasses import replace
    from invfem.derivatives import value_and_grad
    from invfem.structured import RegularizedLoss, hessian_path
    problem = load_problem("pinn_heat", seed=0, **TINY["pinn_heat"])
    theta = problem.theta0
    args = hessian_path(problem).minimize_arguments("hvp")
    assert set(args) == {"hess", "hessp", "jac"} and args["hess"] is None
    g = args["jac"](theta)
    assert torch.allclose(g, value_and_grad(problem.loss, theta)[1], rtol=0, atol=1e-12 * float(g.abs().max()))
    held = args["hessp"]._held
    v = torch.randn(theta.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hv = args["hessp"](theta, v)
    assert args["hessp"]._held is held                            # the gradient's state, reused
    assert torch.allclose(hv, hessian(problem.loss, theta) @ v, atol=1e-10 * float(hv.abs().max()))
    runs = []
    for pop in (False, True):
        kwargs = hessian_path(problem).minimize_arguments("hvp")
        if pop:
            kwargs.pop("jac")
        runs.append(minimize(problem.loss, theta, method="trust-ncg", options={"maxiter": 8, "gtol": 0}, **kwargs))
    assert runs[0].nit == runs[1].nit == 8
    assert torch.allclose(runs[0].x, runs[1].x, atol=1e-8)
    wrapped = replace(problem, structure=RegularizedLoss(problem.loss, 0.1))
    assert "jac" not in hessian_path(wrapped).minimize_arguments("hvp")
    assert "jac" not in hessian_path(problem).minimize_arguments("hessian")


def test_the_pinn_problems_take_the_closed_form_hessian_path():
    from invfem.pinn.curvature import _higher_derivatives
    from invfem.structured import hessian_path
    for name in sorted(TINY):
        path = hessian_path(load_problem(name, seed=0, **TINY[name]))
        assert (path.kind, path.product_kind) == ("structured", "structured")
    z = torch.linspace(-2, 2, 9, dtype=torch.float64)
    t = torch.tanh(z)
    for closed in (True, False):                               # tanh's jet4, and forward AD
        s0, s1, s2, s3, s4 = _higher_derivatives(MLP([1, 2, 1]).sigma, z, closed=closed)
        assert torch.allclose(s3, -2 * (1 - t ** 2) * (1 - 3 * t ** 2), atol=1e-14)
        assert torch.allclose(s4, 8 * t * (1 - t ** 2) * (2 - 3 * t ** 2), atol=1e-14)
    softplus = MLP([1, 2, 1], positivity="softplus")
    from invfem.pinn import PinnLoss, ValueTerm
    assert not PinnLoss(PinnField(softplus), {"v": ValueTerm(z[:, None], 0.0)}).supported


def test_a_pinn_study_runs_both_bvps_with_traces_and_reports_them(tmp_path):
    """compare on two PINN problems (a variant's ``problem`` key), traces every 2 iterations, the
    report script's table from the records (trivial verdicts, fits, divergence)."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    from invfem.cli import main
    config = tmp_path / "pinn.yaml"
    config.write_text(f"""
problem: pinn_elliptic_1d
variants:
  line: {{n_points: 9, widths: [1, 4, 4, 1], test_points: 11}}
  square: {{problem: pinn_diffusion_reaction, maxiter: 4, n_grid: 4, widths: [2, 4, 3, 1], test_grid: 5}}
seeds: [0]
maxiter: 6
diagnostics_every: 0
trace_every: 2
methods:
  - trust-exact
  - {{method: adam, options: {{lr: 1.0e-3}}}}
output: {tmp_path / "out"}
""")
    assert main(["compare", str(config), "--quiet"]) == 0
    square = json.loads((tmp_path / "out" / "square" / "study.json").read_text())
    assert square["problem"] == "pinn_diffusion_reaction" and square["problem_options"]["n_grid"] == 4
    assert square["maxiter"] == 4 and "maxiter" not in square["problem_options"]
    record = json.loads((tmp_path / "out" / "line" / "runs" / "trust-exact-seed0" / "record.json").read_text())
    traces = record["traces"]
    assert [t["iter"] for t in traces] == [0, 2, 4, 6]
    assert traces[0]["f"] > traces[-1]["f"] and len(traces[0]["orthogonality"]) == 4
    assert all(0 <= v <= 1 + 1e-12 for t in traces for v in t["orthogonality"])
    assert 0 < traces[-1]["test_error"] and len(traces[-1]["gradient_split"]) == 2
    problem = load_problem("pinn_elliptic_1d", seed=0, n_points=9, widths=[1, 4, 4, 1], test_points=11)
    theta = torch.load(tmp_path / "out" / "line" / "runs" / "trust-exact-seed0" / "theta.pt", weights_only=True)
    assert abs(traces[-1]["test_error"] - problem.info["test_error"](theta)) < 1e-12
    # a diverging run (losses of 1e282, then inf) still gets its figures (the log axis overflowed)
    from invfem.experiment.report import write_report
    adam = tmp_path / "out" / "line" / "runs" / "adam-seed0" / "record.json"
    diverged = json.loads(adam.read_text())
    diverged["history"][-2]["f"], diverged["history"][-1]["f"] = 1e282, float("inf")
    adam.write_text(json.dumps(diverged))
    (tmp_path / "out" / "line" / "loss_time.png").unlink()
    write_report(tmp_path / "out" / "line", log=lambda *a: None)
    assert (tmp_path / "out" / "line" / "loss_time.png").stat().st_size > 1000
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_pinn.py"
    out = subprocess.run([sys.executable, str(script), "--bvp", str(tmp_path / "out"), "--figures",
                          str(tmp_path / "fig")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| line |") or line.startswith("| square |")]
    assert len(rows) == 4 and all(row.split("|")[3].strip() == "1" for row in rows)    # one run each
    for name in ("line", "square"):
        for fig in ("curves.png", "traces.png", "solutions.png"):
            assert (tmp_path / "fig" / name / fig).stat().st_size > 1000


def test_a_resumed_pinn_run_keeps_its_traces(tmp_path, interrupt_compare):
    """Traces are saved in the checkpoint: a run interrupted at iteration 5 and resumed has the
    uninterrupted run's traces (iterations, losses and test errors; the wall times differ)."""
    import json
    from invfem.experiment.compare import compare
    from invfem.experiment.study import load_study
    records = {}
    for name, interrupt in (("whole", None), ("resumed", 5)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"""
problem: pinn_elliptic_1d
problem_options: {{n_points: 9, widths: [1, 4, 4, 1], test_points: 11}}
seeds: [0]
maxiter: 8
diagnostics_every: 0
checkpoint_every: 2
trace_every: 2
threads_per_run: 1
methods: [trust-exact]
output: {tmp_path / name}
""")
        study = load_study(config)
        if interrupt is not None:
            interrupt_compare(study, interrupt)
        compare(study, quiet=True)
        records[name] = json.loads((tmp_path / name / "runs" / "trust-exact-seed0" / "record.json").read_text())
    whole, resumed = records["whole"], records["resumed"]
    assert resumed["resumed"] and resumed["resumed"][0]["iteration"] == 4
    assert [t["iter"] for t in resumed["traces"]] == [t["iter"] for t in whole["traces"]] == [0, 2, 4, 6, 8]
    for key in ("f", "test_error"):
        assert [t[key] for t in resumed["traces"]] == pytest.approx([t[key] for t in whole["traces"]], rel=1e-12)


def test_a_heat_pinn_study_traces_test_error_and_terms_and_reports_them(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    from invfem.cli import main
    config = tmp_path / "heat.yaml"
    config.write_text(f"""
problem: pinn_heat
problem_options: {{n_points: 60, widths: [3, 4, 4, 1], test_points: 50, fem_n: 4, fem_dt: 0.25}}
seeds: [0]
maxiter: 5
diagnostics_every: 0
trace_every: 1
methods:
  - {{label: trust-ncg, method: trust-ncg, options: {{preset: reference-001}}}}
  - {{method: adam, options: {{lr: 1.0e-3}}}}
output: {tmp_path / "out"}
""")
    assert main(["compare", str(config), "--quiet"]) == 0
    record = json.loads((tmp_path / "out" / "runs" / "trust-ncg-seed0" / "record.json").read_text())
    assert [t["iter"] for t in record["traces"]] == list(range(record["nit"] + 1))
    problem = load_problem("pinn_heat", seed=0, n_points=60, widths=[3, 4, 4, 1], test_points=50, fem_n=4,
                           fem_dt=0.25)
    theta = torch.load(tmp_path / "out" / "runs" / "trust-ncg-seed0" / "theta.pt", weights_only=True)
    terms = problem.info["terms"](theta)
    assert record["traces"][-1]["terms"] == pytest.approx([terms["pde"], terms["bc"], terms["ic"]], rel=1e-12)
    assert record["traces"][-1]["f"] == pytest.approx(record["loss"], rel=1e-12)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_pinn.py"
    out = subprocess.run([sys.executable, str(script), "--heat", str(tmp_path / "out"), "--figures",
                          str(tmp_path / "fig")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| trust-ncg |") or line.startswith("| adam |")]
    assert len(rows) == 2 and rows[0].split("|")[2].strip() == str(record["nit"])
    for fig in ("heat_curves.png", "heat_solutions.png", "heat_trust_region.png"):
        assert (tmp_path / "fig" / fig).stat().st_size > 1000


def test_damped_newton_ends_a_pinn_bvp_at_the_trivial_saddle_where_trust_exact_fits():
    """002 §4 on the 1-D elliptic BVP (defaults: SIREN omega 3, [1, 10, 10, 1], 101 points):
    relaxed LM-damped Newton (alpha 0.5, mu 30, our choice: the reference's values are lost) from
    seed 6 ends at u = 0 — stationary to 1e-6, a saddle (lambda_min < 0), the loss of u = 0, and
    test error 1. trust-exact from the same seed fits u* = sin(pi x): a loss below 1e-6 of that,
    test error < 1e-4, not trivial."""
    from invfem.diagnostics import trivial_verdict
    from invfem.structured import hessian_path
    p = load_problem("pinn_elliptic_1d", seed=6)
    path = hessian_path(p)
    points, exact = p.info["points"], p.kappa_true(p.info["points"])
    newton = minimize(p.loss, p.theta0, method="newton-damped", hess=path.function,
                      options={"alpha": 0.5, "mu": 30.0, "maxiter": 300})
    verdict = trivial_verdict(p.loss, p.kappa, newton.x, points, exact, path.function(newton.x))
    assert verdict["trivial"], verdict
    assert abs(newton.fun - float(torch.mean(p.info["forcing"] ** 2))) < 1e-8 * newton.fun     # the loss of u = 0
    assert p.info["test_error"](newton.x) > 0.999
    trust = minimize(p.loss, p.theta0, method="trust-exact", hess=path.function, options={"maxiter": 300})
    assert trust.fun < 1e-6 * newton.fun and p.info["test_error"](trust.x) < 1e-4
    fit = trivial_verdict(p.loss, p.kappa, trust.x, points, exact, path.function(trust.x))
    assert not fit["trivial"] and not fit["output_zero"]

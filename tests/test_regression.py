"""problems/regression.py (reference 001): the loss, its exact Hessian, targets, bad input."""

import pytest
import torch

from invfem.derivatives import hessian, symmetry_error, taylor_test
from invfem.errors import ConfigError
from invfem.optim import minimize
from invfem.problems import regression
from invfem.structured import hessian_path


def test_reference_001_network_and_loss():
    p = regression.make_problem(seed=0, target="sin5", n_points=500)
    assert p.n_params == 1131 and hessian_path(p).kind == "structured"
    x, y = p.info["points"], torch.sin(5 * p.info["points"])
    manual = torch.mean((p.kappa(p.theta0, x[:, None]) - y) ** 2)
    assert float(p.loss(p.theta0)) == pytest.approx(float(manual), rel=1e-14)
    assert float(x.min()) >= -1.1 and float(x.max()) <= 1.1 and x.shape == (500,)
    grid = p.info["test_points"]
    assert grid.shape == (10000,) and float(grid[0]) == -1.0 and float(grid[-1]) == 1.0
    assert p.info["test_error"](p.theta0) > 0


def _assert_exact_hessian_and_taylor_rates(p, theta, direction_seed, h0):
    """The structured Hessian equals the generic one (1e-10), is symmetric, and the loss has Taylor rates 1, 2, 3."""
    h, generic = p.hessian(theta), hessian(p.loss, theta)
    assert float(torch.linalg.norm(h - generic) / torch.linalg.norm(generic)) < 1e-10
    assert symmetry_error(h) < 1e-12
    d = torch.randn(p.n_params, generator=torch.Generator().manual_seed(direction_seed))
    rates = taylor_test(p.loss, theta, d / d.norm(), h0=h0).min_rates
    assert rates[0] > 0.95 and rates[1] > 1.95 and rates[2] > 2.95, rates


@pytest.mark.parametrize("target,sampling", [("quadratic", "random"), ("exp", "grid"), ("sin10", "random"),
                                             ("1 + x^3", "grid")])
def test_structured_hessian_equals_generic_and_taylor_rates(target, sampling):
    p = regression.make_problem(seed=2, target=target, n_points=150, sampling=sampling, widths=(1, 7, 5, 1))
    theta = p.theta0 + 0.3 * torch.randn(p.n_params, generator=torch.Generator().manual_seed(3))
    _assert_exact_hessian_and_taylor_rates(p, theta, direction_seed=4, h0=2e-2)


def test_trust_region_fits_a_line():
    p = regression.make_problem(seed=0, target="linear", n_points=200, widths=(1, 8, 8, 1))
    res = minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian, options={"maxiter": 200, "gtol": 1e-8})
    assert res.fun < 1e-6 and p.info["test_error"](res.x) < 1e-5


def test_regression_bad_input():
    with pytest.raises(ConfigError, match="sampling must be 'random' or 'grid'"):
        regression.make_problem(sampling="sobol")
    with pytest.raises(ConfigError, match=r"widths must start with 1 \(x\) and end with 1"):
        regression.make_problem(widths=(2, 5, 1))
    with pytest.raises(ConfigError, match="interval must have low < high"):
        regression.make_problem(interval=(1, -1))
    with pytest.raises(ConfigError, match="not valid|unknown"):
        regression.make_problem(target="sin(5*x")


def test_a_regression_study_reports_the_test_grid_error(tmp_path):
    from invfem.experiment import compare, load_study

    config = tmp_path / "study.yaml"
    config.write_text(f"""
problem: regression
problem_options: {{target: sin5, n_points: 100, widths: [1, 6, 6, 1]}}
seeds: [0]
maxiter: 8
diagnostics_every: 4
methods:
  - {{method: trust-ncg, options: reference-001}}
  - {{label: adam-then-tr, stages: [{{method: adam, options: {{maxiter: 4}}}}, trust-exact]}}
output: {tmp_path / "out"}
""")
    records = compare(load_study(config), quiet=True)
    p = regression.make_problem(seed=0, target="sin5", n_points=100, widths=(1, 6, 6, 1))
    for r in records:
        theta = torch.load(tmp_path / "out" / "runs" / f"{r['label']}-seed0" / "theta.pt")
        truth = torch.sin(5 * p.info["test_points"])
        learned = p.kappa(theta, p.info["test_points"][:, None])
        expected = float(torch.linalg.norm(learned - truth) / torch.linalg.norm(truth))
        assert r["kappa_error"] == pytest.approx(expected, rel=1e-12)
        assert r["diagnostics"]["points"] and "saturation" in r["diagnostics"]["points"][0]
    assert records[0]["options"]["preset"] == "reference-001" and records[1]["nit"] == 12


@pytest.mark.parametrize("options", [{"activation": "sin"}, {"activation": "sin", "omega": 3.0},
                                     {"output_bias": False}, {"activation": "sin", "output_bias": False},
                                     {"fourier_features": 4, "fourier_sigma": 2.0, "widths": (8, 6, 1)}])
def test_siren_and_fourier_feature_networks_have_exact_structured_hessians(options):
    options = {"widths": (1, 7, 5, 1), **options}
    p = regression.make_problem(seed=1, target="sin10", n_points=120, **options)
    theta = p.theta0 + 0.2 * torch.randn(p.n_params, generator=torch.Generator().manual_seed(0))
    _assert_exact_hessian_and_taylor_rates(p, theta, direction_seed=5, h0=5e-3)


def test_sin_network_and_its_saved_law():
    from invfem import load_kappa, save_kappa
    from invfem.nn import MLP

    mlp = MLP([2, 5, 1], activation="sin", omega=2.5)
    theta = mlp.init(seed=3)
    x = torch.rand(7, 2, generator=torch.Generator().manual_seed(1))
    w1, b1 = mlp.layers(theta)[0]
    w2, b2 = mlp.layers(theta)[1]
    expected = torch.sin(2.5 * (x @ w1.T + b1)) @ w2.T + b2
    torch.testing.assert_close(mlp(theta, x), expected[:, 0], rtol=1e-14, atol=1e-14)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = save_kappa(Path(tmp) / "law.pt", mlp, theta, "x")
        torch.testing.assert_close(load_kappa(path)(x), expected[:, 0], rtol=1e-14, atol=1e-14)
    with pytest.raises(ConfigError, match="omega is the frequency of the sin activation"):
        MLP([2, 5, 1], activation="tanh", omega=2.0)
    with pytest.raises(ConfigError, match="omega must be a number > 0"):
        MLP([2, 5, 1], activation="sin", omega=0)


def test_a_study_of_a_fourier_feature_network_runs(tmp_path):
    """The law behind fixed features is not an MLP of x: the network-only diagnostics are skipped,
    the rest is recorded (this once failed every run of the Fourier variant)."""
    from invfem.experiment import compare, load_study

    config = tmp_path / "study.yaml"
    config.write_text(f"""
problem: regression
problem_options: {{target: "sin(pi*x)", n_points: 40, widths: [8, 5, 1], fourier_features: 4, output_bias: false,
                  test_points: 30}}
seeds: [0]
maxiter: 4
diagnostics_every: 2
methods: [trust-exact]
output: {tmp_path / "out"}
""")
    record = compare(load_study(config), quiet=True)[0]
    assert not record.get("failed") and record["nit"] == 4 and record["kappa_error"] > 0
    assert "network_loss" not in record["diagnostics"]["final"]

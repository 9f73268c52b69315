"""Issue 19, deliver 2 (part): identifiability from the exact Hessian."""

import json

import numpy as np
import pytest
import torch

from invfem.diagnostics import identifiability
from invfem.fem import unit_square
from invfem.optim import minimize
from invfem.problems import poisson


def _mesh():
    return unit_square(6).with_boundaries({"left": lambda x: np.isclose(x[0], 0), "right": lambda x: np.isclose(x[0], 1)})


def _fit(**options):
    p = poisson.make_problem(0, mesh=_mesh(), network={"widths": [5]},
                             observations={"synthetic": {"kappa_true": "1 + x^2", "at": "nodes"}}, **options)
    return p, minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian, options={"maxiter": 200}).x


def test_dirichlet_data_without_a_source_leave_the_scale_of_kappa_undetermined():
    """u = 0 on the left, 1 on the right, no flux elsewhere, no source: c kappa gives the same u
    for every c, so full-field data fix kappa only up to a factor; flagged, the shift is not."""
    p, theta = _fit(source=0, dirichlet={"left": 0, "right": 1})
    out = identifiability(p, theta)
    assert not out["changes"]["scale"]["determined"] and out["changes"]["scale"]["curvature_ratio"] < 1e-5
    assert out["changes"]["scale"]["representable"] > 0.99
    assert out["changes"]["shift"]["determined"]
    assert len(out["warnings"]) == 1 and "kappa -> c kappa" in out["warnings"][0]
    # the invariance is real: the law scaled by 3 gives the same data
    scaled = poisson.make_problem(0, mesh=_mesh(), network={"widths": [5]}, source=0, dirichlet={"left": 0, "right": 1},
                                  observations={"synthetic": {"kappa_true": "3 + 3*x^2", "at": "nodes"}})
    torch.testing.assert_close(scaled.fields(theta)["u_obs"], p.fields(theta)["u_obs"], rtol=1e-10, atol=1e-12,
                               equal_nan=True)                       # NaN: the Dirichlet nodes, not observed


def test_a_source_determines_the_scale():
    p, theta = _fit(source=1, dirichlet=0)
    out = identifiability(p, theta)
    assert out["changes"]["scale"]["determined"] and out["changes"]["shift"]["determined"]
    assert out["warnings"] == [] and "scaling and shifts of kappa are determined" in out["summary"]
    assert 0 < out["n_informed"] <= p.n_params and out["kappa_informed"] <= out["kappa_rank"]


def test_invfem_run_reports_it_and_warns(tmp_path, capsys):
    from invfem.cli import main

    path = tmp_path / "mesh.msh"
    from invfem.fem.export import write_gmsh
    write_gmsh(path, _mesh())
    config = tmp_path / "run.yaml"
    config.write_text(f"problem: poisson\nproblem_options: {{mesh: {path}, network: {{widths: [5]}}, source: 0, "
                      "dirichlet: {left: 0, right: 1}, observations: {synthetic: {kappa_true: '1 + x^2', at: nodes}}}\n"
                      f"options: {{maxiter: 200}}\noutput: {tmp_path / 'out'}\n")
    assert main(["run", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "warning: the data do not determine kappa -> c kappa" in out
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["identifiability"]["changes"]["scale"]["determined"] is False


def _two_bumps(alpha, observe_right):
    """kappa(x) = 1 + t0 b_left(x) + t1 b_right(x) (bumps in x < 0.4 and x > 0.6); the data see t0
    only, or also t1 (``observe_right``): the right region is uninformed in the first case."""
    from invfem.problem import Problem

    left = lambda x: torch.exp(-((x[:, 0] - 0.2) / 0.1) ** 2)
    right = lambda x: torch.exp(-((x[:, 0] - 0.8) / 0.1) ** 2)
    kappa = lambda t, x: 1 + t[0] * left(x) + t[1] * right(x)
    weights = torch.tensor([1e3, 1e3 if observe_right else 0.0], dtype=torch.float64)
    loss = lambda t: (weights * (t - 0.3) ** 2).sum() + alpha * (t * t).sum()
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, 11, dtype=torch.float64),
                                      torch.linspace(0, 1, 5, dtype=torch.float64), indexing="ij"), -1).reshape(-1, 2)
    return Problem("bumps", torch.zeros(2, dtype=torch.float64), loss, kappa, info={"regularization": alpha}), grid


def test_a_region_the_data_do_not_see_is_named():
    problem, grid = _two_bumps(0.5, observe_right=False)
    theta = torch.tensor([0.3 * 1e3 / (1e3 + 0.5), 0.0], dtype=torch.float64)
    found = identifiability(problem, theta, points=grid)
    region = found["uninformed"]
    assert region["n_points"] > 0 and region["variance_ratio_max"] == pytest.approx(1.0, abs=1e-9)
    assert region["where"] == "x in [0.5, 1], y in [0, 1]"       # the right bump (and the midpoint: half its share)
    assert any("do not inform kappa at" in w for w in found["warnings"])
    seen, _ = _two_bumps(0.5, observe_right=True)
    found = identifiability(seen, theta, points=grid)
    assert found["uninformed"]["n_points"] == 0 and not any("do not inform" in w for w in found["warnings"])
    assert found["uninformed"]["variance_ratio_max"] < 1e-3

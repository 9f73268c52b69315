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

"""problems/torus.py (reference 002): stationary points of a 2-parameter regression and who finds which."""

import pytest
import torch

from invfem.errors import ConfigError
from invfem.problems import torus


def test_every_stationary_point_is_stationary_and_of_its_kind():
    points = torus.stationary_points()
    assert len(points) == 8
    assert [p["kind"] for p in points].count("minimum") == 2 and [p["kind"] for p in points].count("maximum") == 2
    p = torus.make_problem()
    for point in points:
        theta = torch.tensor(point["theta"], dtype=torch.float64)
        assert float(torch.func.grad(p.loss)(theta).norm()) < 1e-12
        lam = torch.linalg.eigvalsh(torch.func.hessian(p.loss)(theta))
        signs = {"minimum": (1, 1), "saddle": (-1, 1), "maximum": (-1, -1)}[point["kind"]]
        assert tuple(int(torch.sign(v)) for v in lam) == signs, (point, lam)
        assert float(torus.position(theta)[2].abs()) < 1e-12                 # all in the plane z = 0
    # no other stationary point: a fine grid of Newton solves lands only on these
    assert torus.nearest_stationary((0.3, 0.2), points) == -1


def test_exact_newton_finds_saddles_and_maxima_where_the_others_find_minima():
    result = torus.basins({"newton": ("newton-exact", {}), "sfn": ("saddle-free-newton", {}),
                           "tr": ("trust-exact", {})}, n=8, maxiter=100)
    kinds = [p["kind"] for p in torus.stationary_points()]
    reached = {label: {kinds[i] for i in r.ravel() if i >= 0} for label, r in result.items()}
    assert all((r >= 0).all() for r in result.values())                  # every start converged
    assert reached["newton"] >= {"saddle", "maximum"}
    assert reached["sfn"] == reached["tr"] == {"minimum"}


def test_torus_bad_shape():
    with pytest.raises(ConfigError, match="R > r > 0 and 0 < e < 1"):
        torus.make_problem(R=1.0, r=2.0)
    with pytest.raises(ConfigError, match="stationary points off the plane"):
        torus.make_problem(R=1.1, r=1.0, e=0.3)

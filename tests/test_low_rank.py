"""Issue 21, deliver 3 (part): randomized low-rank Hessians from HVPs, and Laplace from them."""

import pytest
import torch

from invfem.diagnostics import laplace
from invfem.diagnostics.low_rank import low_rank_hessian, randomized_eigh
from invfem.errors import ConfigError
from invfem.problems import poisson


def _small_poisson(**extra):
    options = dict(mesh={"unit_square": {"n": 5}}, network={"widths": [6, 6]}, regularization=0.1,
                   observations={"synthetic": {"kappa_true": "1 + 0.5*x*y", "noise": 1e-3, "noise_kind": "gaussian",
                                               "at": 12}})
    options.update(extra)
    return poisson.make_problem(0, **options)


def test_the_top_eigenvalues_are_within_the_reported_error():
    problem = _small_poisson()
    theta = problem.theta0 + 0.05 * torch.randn(problem.n_params, dtype=torch.float64,
                                                generator=torch.Generator().manual_seed(3))
    dense = torch.linalg.eigvalsh(problem.hessian(theta))
    top = dense[torch.argsort(dense.abs(), descending=True)]
    for rank in (5, 12):
        found = low_rank_hessian(problem, theta, rank, power_iterations=1)
        assert found.vectors.shape == (problem.n_params, rank) and found.eigenvalues.shape == (rank,)
        assert torch.allclose(found.vectors.T @ found.vectors, torch.eye(rank, dtype=torch.float64), atol=1e-10)
        error = (found.eigenvalues - top[:rank]).abs()
        assert float(error.max()) <= found.error_estimate, (error, found.error_estimate)
        nearest = (found.eigenvalues[:, None] - dense[None, :]).abs().min(dim=1).values
        assert bool((nearest <= found.eigenvalue_errors * (1 + 1e-9) + 1e-9).all()), (nearest, found.eigenvalue_errors)
        # the pair residual of the leading eigenvalue is a useful bound: within 1% of it
        assert float(found.eigenvalue_errors[0]) < 1e-2 * float(top.abs()[0])
        assert float(error[0]) < 1e-5 * float(top.abs()[0])
        assert found.n_hvp == (rank + 10) * 3 + 10


def test_an_exactly_low_rank_operator_is_recovered_to_round_off():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(60, 4, generator=gen, dtype=torch.float64)).Q
    values = torch.tensor([50.0, -20.0, 5.0, 1.0], dtype=torch.float64)
    matrix = basis @ torch.diag(values) @ basis.T
    found = randomized_eigh(lambda block: matrix @ block, 60, 4, oversample=4)
    assert torch.allclose(found.eigenvalues, values, atol=1e-10)
    assert found.error_estimate < 1e-9


def test_low_rank_laplace_equals_the_dense_one_when_the_misfit_hessian_has_low_rank():
    # data made by the network itself at theta0 (no noise): there the misfit is 0 and its Hessian is
    # J^T W J, of rank <= the 6 observations; the low-rank posterior with rank 10 is then exact
    base = _small_poisson()
    own_law = lambda points: base.kappa(base.theta0, points)
    problem = _small_poisson(observations={"synthetic": {"kappa_true": own_law, "at": 6}})
    theta = problem.theta0
    assert float(problem.loss(theta) - problem.regularization * (theta @ theta)) < 1e-20
    dense = laplace(problem, theta, n_samples=400, seed=1)
    low = laplace(problem, theta, n_samples=400, seed=1, rank=10)
    assert low.covariance is None and low.low_rank is not None
    assert torch.allclose(low.std_linearized, dense.std_linearized, rtol=1e-7, atol=1e-12)
    assert torch.allclose(low.lower_linearized, dense.lower_linearized, rtol=1e-7, atol=1e-12)
    assert low.effective_dimension == pytest.approx(dense.effective_dimension, rel=1e-7)
    # the samples follow the same posterior (different draws): their spread agrees statistically
    assert torch.allclose(low.std, dense.std, rtol=0.15)


def test_low_rank_laplace_needs_a_prior():
    problem = _small_poisson(regularization=0.0)
    with pytest.raises(ConfigError, match="rank needs a prior"):
        laplace(problem, problem.theta0, rank=5)
    with pytest.raises(ConfigError, match="rank must be an integer >= 1"):
        low_rank_hessian(problem, problem.theta0, 0)


@pytest.fixture
def formed(monkeypatch):
    """The structured P x P Hessians formed while the test runs (one entry each)."""
    from invfem import structured

    calls = []
    original = structured.CoefficientLoss.hessian
    monkeypatch.setattr(structured.CoefficientLoss, "hessian", lambda self, theta: calls.append(1) or
                        original(self, theta))
    return calls


def _krylov_run(tmp_path, **extra) -> dict:
    """``invfem run`` of trust-krylov with Laplace from 8 eigenpairs on a small poisson problem; its record."""
    import json

    from invfem.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "problem": "poisson", "seeds": [0], "method": "trust-krylov", "options": {"maxiter": 30},
        "problem_options": {"mesh": {"unit_square": {"n": 5}}, "network": {"widths": [6, 6]}, "regularization": 0.1,
                            "observations": {"synthetic": {"kappa_true": "1 + 0.5*x*y", "noise": 1e-3,
                                                           "noise_kind": "gaussian", "at": 12}}},
        "laplace_samples": 50, "laplace_rank": 8, "output": str(tmp_path / "out"), **extra}))
    assert main(["run", str(config), "--quiet"]) in (0, 1)
    return json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]


def test_invfem_run_with_laplace_rank_forms_no_dense_hessian(tmp_path, formed):
    run = _krylov_run(tmp_path, hessian_at_start=False, hessian_at_end=False)
    assert formed == []                                         # no P x P Hessian anywhere
    summary = run["laplace"]
    if "skipped" not in summary:
        assert summary["rank"] == 8 and summary["n_hvp"] == 18 * 3 + 10
        assert summary["contains_kappa_map"]


def test_above_the_size_threshold_run_takes_spectra_identifiability_and_laplace_from_hvps(tmp_path, monkeypatch,
                                                                                        capsys, formed):
    from invfem.experiment import run as run_module

    monkeypatch.setattr(run_module, "LOW_RANK_ABOVE", 10)              # this 85-parameter problem counts as large
    run = _krylov_run(tmp_path)
    out = capsys.readouterr().out
    assert formed == []
    for key in ("hessian0", "hessian_end"):
        assert run[key]["low_rank"] and run[key]["rank"] == 8 and run[key]["n_positive"] + run[key]["n_negative"] == 8
    assert "the 8 dominant eigenvalues (" in out and "no P x P matrix" in out
    assert run["identifiability"]["rank"] == 8 and "summary" in run["identifiability"]
    if "skipped" not in run["laplace"]:
        assert run["laplace"]["rank"] == 8


def test_the_single_pass_eigensolver_recovers_low_rank_exactly_and_bounds_its_eigenvalues():
    """passes=1 (Halko et al. §5.5): k + m products; exact on an operator of rank <= k; on a
    problem's Hessian its eigenvalues lie within its (Weyl) bound of the dense ones."""
    gen = torch.Generator().manual_seed(2)
    basis = torch.linalg.qr(torch.randn(60, 6, generator=gen, dtype=torch.float64)).Q
    lam = torch.tensor([9.0, -5.0, 3.0, -2.0, 1.0, 0.5], dtype=torch.float64)
    h = (basis * lam) @ basis.T
    found = randomized_eigh(lambda block: h @ block, 60, 6, oversample=4, power_iterations=0, passes=1)
    assert found.n_hvp == 10 + 10
    torch.testing.assert_close(found.eigenvalues, lam[torch.argsort(lam.abs(), descending=True)], rtol=1e-10,
                               atol=1e-10)
    assert found.error_estimate < 1e-8
    problem = _small_poisson()
    theta = problem.theta0 + 0.05 * torch.randn(problem.n_params, dtype=torch.float64, generator=gen)
    dense = torch.linalg.eigvalsh(problem.hessian(theta))
    one = low_rank_hessian(problem, theta, 8, power_iterations=0, passes=1)
    nearest = (one.eigenvalues[:, None] - dense[None, :]).abs().min(dim=1).values
    assert bool((nearest <= one.eigenvalue_errors * (1 + 1e-9) + 1e-9).all())
    assert one.n_hvp == 18 + 10
    with pytest.raises(ConfigError, match="single-pass"):
        randomized_eigh(lambda block: h @ block, 60, 6, passes=1)           # power iterations asked
    with pytest.raises(ConfigError, match="passes"):
        randomized_eigh(lambda block: h @ block, 60, 6, passes=3)

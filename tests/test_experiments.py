"""Issue 19, deliver 1: several experiments on one specimen, one law (``experiments:``, joint_problem)."""

import json

import meshio
import pytest
import torch

from invfem import minimize
from invfem.cli import main
from invfem.derivatives import hessian as generic_hessian, taylor_test
from invfem.diagnostics.identifiability import identifiability
from invfem.errors import ConfigError
from invfem.joint import experiment_misfits, joint_problem
from invfem.problems import heat, poisson

LAW = "1 + u**2"
COMMON = dict(mesh={"unit_square": {"n": 5}}, network={"widths": [8]}, coefficient_input="u")


def _synthetic(**extra):
    return {"synthetic": {"kappa_true": LAW, "noise": 1e-3, "noise_kind": "gaussian", **extra}}


# loaded: a source, u = 0 on the boundary (u in [0, 0.6]); heated: no source, u = 1 + x on the
# boundary (u in [1, 2]): kappa -> c kappa leaves heated's state unchanged
LOADED = {"name": "loaded", "source": 10, "observations": _synthetic()}
HEATED = {"name": "heated", "source": 0, "dirichlet": "1 + x", "observations": _synthetic()}


def _fit(experiments, maxiter=40):
    problem = poisson.make_problem(0, experiments=experiments, regularization=1e-6, **COMMON)
    result = minimize(problem.loss, problem.theta0, method="trust-exact", hess=problem.hessian,
                      options={"maxiter": maxiter})
    grid = torch.linspace(0, 2, 101, dtype=torch.float64)[:, None]
    true = 1 + grid[:, 0] ** 2
    error = float((problem.kappa(result.x, grid).detach() - true).norm() / true.norm())
    return problem, result.x, error


@pytest.fixture(scope="module")
def fits():
    return {label: _fit(exps) for label, exps in [("loaded", [LOADED]), ("heated", [HEATED]),
                                                    ("both", [LOADED, HEATED])]}


def test_the_joint_fit_is_better_than_each_experiment_alone(fits):
    errors = {label: fit[2] for label, fit in fits.items()}
    assert errors["both"] < 0.5 * errors["loaded"] and errors["both"] < 0.5 * errors["heated"], errors
    assert errors["both"] < 0.25, errors


def test_identifiability_warns_for_the_heated_experiment_alone_and_not_for_both(fits):
    alone = identifiability(*fits["heated"][:2])
    assert not alone["changes"]["scale"]["determined"]
    assert any("kappa -> c kappa" in w for w in alone["warnings"])
    both = identifiability(*fits["both"][:2])
    assert both["changes"]["scale"]["determined"] and both["warnings"] == []


def test_joint_hessian_residual_and_jacobian_are_exact():
    problem = poisson.make_problem(0, experiments=[LOADED, {**HEATED, "weight": 2.5}], regularization=1e-3,
                                   **{**COMMON, "mesh": {"unit_square": {"n": 3}}, "network": {"widths": [4]}})
    theta = problem.theta0 + 0.1 * torch.randn(problem.n_params, dtype=torch.float64,
                                               generator=torch.Generator().manual_seed(1))
    assert problem.hessian_kind == "structured"
    h = problem.hessian(theta)
    reference = generic_hessian(problem.loss, theta)
    assert float((h - reference).abs().max()) <= 1e-10 * float(reference.abs().max())
    assert float((h - h.T).abs().max()) <= 1e-12 * float(h.abs().max())
    # the loss is the weighted sum of the experiments' plus the prior
    parts = [e["problem"].loss(theta) * e["weight"] for e in problem.info["experiments"]]
    assert float(problem.loss(theta)) == pytest.approx(float(sum(parts) + 1e-3 * (theta @ theta)), rel=1e-13)
    r = problem.residual(theta)
    assert float(r @ r) == pytest.approx(float(problem.loss(theta)), rel=1e-12)
    jac = problem.jacobian(theta)
    assert torch.allclose(jac, torch.func.jacrev(problem.residual)(theta), rtol=1e-9, atol=1e-10)
    direction = torch.randn(problem.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rates = taylor_test(problem.loss, theta, direction, h0=1e-2).rates
    assert abs(rates[0, -1] - 1) < 0.1 and abs(rates[1, -1] - 2) < 0.1 and abs(rates[2, -1] - 3) < 0.2, rates


def test_heat_experiments_share_the_law_with_their_own_start_and_source():
    options = dict(mesh={"unit_square": {"n": 3}}, network={"widths": [4]}, n_steps=3, dt=0.05)
    law = {"kappa_true": "1 + 0.5*x", "noise": 1e-3, "noise_kind": "gaussian"}
    problem = heat.make_problem(0, experiments=[
        {"name": "warm", "u0": "x*(1 - x)", "observations": {"synthetic": law}},
        {"name": "driven", "source": "sin(3*t)", "observations": {"synthetic": law}, "weight": 0.5}], **options)
    theta = problem.theta0.clone()
    h = problem.hessian(theta)
    reference = generic_hessian(problem.loss, theta)
    assert float((h - reference).abs().max()) <= 1e-10 * float(reference.abs().max())
    single = heat.make_problem(0, u0="x*(1 - x)", observations={"synthetic": law}, **options)
    assert float(problem.info["experiments"][0]["problem"].loss(theta)) == pytest.approx(float(single.loss(theta)))
    misfits = experiment_misfits(problem, theta)
    assert [m["name"] for m in misfits] == ["warm", "driven"] and misfits[1]["weight"] == 0.5
    assert problem.info["misfit_expected"] == pytest.approx(sum(m["weight"] * m["misfit_expected"] for m in misfits))


def test_each_experiment_draws_its_own_noise_unless_a_data_seed_is_given():
    two = poisson.make_problem(0, experiments=[LOADED, {**LOADED, "name": "again"}], **COMMON)
    a, b = (e["problem"].structure.misfit.data for e in two.info["experiments"])
    assert not torch.equal(a, b)
    same = {**LOADED, "observations": _synthetic(data_seed=0)}
    two = poisson.make_problem(0, experiments=[same, {**same, "name": "again"}], **COMMON)
    a, b = (e["problem"].structure.misfit.data for e in two.info["experiments"])
    assert torch.equal(a, b)


@pytest.mark.parametrize("options, message", [
    (dict(observations=_synthetic(), experiments=[LOADED]), "not also at the top level"),
    (dict(experiments=[]), "non-empty list"),
    (dict(experiments=[LOADED, LOADED]), "'loaded' names two experiments"),
    (dict(experiments=[{**LOADED, "weight": 0}]), "experiments[0].weight must be a number > 0"),
    (dict(experiments=[{**LOADED, "sorce": 1}]), "experiments[0]: unknown option(s) ['sorce']"),
    (dict(experiments=[{**LOADED, "u0": 1}]), "u0 is an option of heat experiments only"),
    (dict(experiments=[{"source": 1}]), "experiments[0]"),
    (dict(experiments=[{**LOADED, "source": "x +* y"}]), "experiments[0].source"),
    (dict(experiments=[{**LOADED, "name": "a/b"}]), "experiments[0].name"),
    (dict(experiments=[LOADED, {**HEATED, "observations": _synthetic(kappa_true="-1")}]), "experiments[1] (heated)"),
    (dict(), "observations: missing"),
])
def test_bad_experiments_are_one_line_errors(options, message):
    with pytest.raises(ConfigError) as info:
        poisson.make_problem(0, **{**COMMON, **options})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_joint_problem_refuses_experiments_that_do_not_share_the_law():
    a = poisson.make_problem(0, observations=_synthetic(), **COMMON)
    b = poisson.make_problem(1, observations=_synthetic(), **COMMON)
    with pytest.raises(ConfigError, match="must share one law"):
        joint_problem([a, b])
    prior = poisson.make_problem(0, observations=_synthetic(), regularization=0.1, **COMMON)
    with pytest.raises(ConfigError, match="its own regularization"):
        joint_problem([a, prior])


def test_run_writes_outputs_per_experiment_and_compare_runs_it(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(json.dumps({
        "problem": "poisson", "seeds": [0], "method": "trust-exact", "options": {"maxiter": 15},
        "problem_options": {**COMMON, "regularization": 1e-4, "experiments": [LOADED, HEATED]},
        "hessian_at_end": True, "laplace_samples": 20, "output": str(tmp_path / "out")}))
    assert main(["run", str(config), "--quiet"]) in (0, 1)
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    run = results["runs"][0]
    assert [e["name"] for e in run["experiments"]] == ["loaded", "heated"]
    assert all(e["misfit"] > 0 and e["misfit_expected"] == e["n_observations"] / 2 for e in run["experiments"])
    for name in ("loaded", "heated"):
        mesh = meshio.read(out / f"fields_seed0_{name}.vtu")
        assert {"u_theta", "kappa", "kappa_true", "u_obs", "misfit"} <= set(mesh.point_data)
        if "laplace" in run and "skipped" not in run["laplace"]:
            assert "kappa_std_linearized" in mesh.point_data
    assert (out / "kappa_seed0.png").stat().st_size > 0 and (out / "kappa_seed0.pt").is_file()
    # the two experiments' states differ (heated: u = 1 + x on the boundary)
    loaded = meshio.read(out / "fields_seed0_loaded.vtu").point_data["u_theta"]
    heated = meshio.read(out / "fields_seed0_heated.vtu").point_data["u_theta"]
    assert heated.min() >= 1 - 1e-9 and loaded.max() < 1

    study = tmp_path / "study.yaml"
    study.write_text(json.dumps({
        "problem": "poisson", "seeds": [0], "maxiter": 3,
        "methods": [{"method": "trust-exact"}, {"method": "l-bfgs-b"}],
        "problem_options": {**COMMON, "regularization": 1e-4, "experiments": [LOADED, HEATED]},
        "output": str(tmp_path / "study")}))
    assert main(["compare", str(study), "--quiet"]) == 0
    assert (tmp_path / "study" / "summary.csv").is_file()


def test_a_problem_file_returning_a_joint_problem_gets_the_same_outputs(tmp_path):
    problem_file = tmp_path / "two_loadings.py"
    problem_file.write_text(f'''
from invfem.joint import joint_problem
from invfem.problems import poisson

COMMON = {COMMON!r}


def make_problem(seed=0):
    loaded = poisson.make_problem(seed, source=10, observations={LOADED["observations"]!r}, **COMMON)
    heated = poisson.make_problem(seed, source=0, dirichlet="1 + x", observations={HEATED["observations"]!r},
                                  **COMMON)
    return joint_problem([loaded, heated], names=["loaded", "heated"], regularization=1e-4)
''')
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"problem": str(problem_file), "seeds": [0], "method": "trust-exact",
                                  "options": {"maxiter": 5}, "output": str(tmp_path / "out")}))
    assert main(["run", str(config), "--quiet"]) == 0
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["hessian_kind"] == "structured" and [e["name"] for e in run["experiments"]] == ["loaded", "heated"]
    for name in ("loaded", "heated"):
        assert "u_theta" in meshio.read(tmp_path / "out" / f"fields_seed0_{name}.vtu").point_data
    assert (tmp_path / "out" / "kappa_seed0.png").is_file()


def test_heat_experiments_write_their_own_time_series(tmp_path):
    from invfem.experiment.outputs import write_outputs

    law = {"kappa_true": "1 + 0.5*x", "noise": 1e-3, "noise_kind": "gaussian", "at": 6}
    problem = heat.make_problem(0, mesh={"unit_square": {"n": 3}}, network={"widths": [4]}, n_steps=3, dt=0.05,
                                experiments=[{"name": "warm", "u0": "x*(1 - x)", "observations": {"synthetic": law}},
                                             {"name": "driven", "source": "sin(3*t)",
                                              "observations": {"synthetic": law}}])
    written = {p.name for p in write_outputs(problem, problem.theta0, tmp_path, 0)}
    for name in ("warm", "driven"):
        assert {f"states_seed0_{name}.xdmf", f"fields_seed0_{name}.vtu", f"observations_seed0_{name}.vtu"} <= written
        with meshio.xdmf.TimeSeriesReader(tmp_path / f"states_seed0_{name}.xdmf") as reader:
            reader.read_points_cells()
            assert reader.num_steps == 4
    assert "kappa_seed0.png" in written


def test_the_plate_example_configs_load_and_build():
    from pathlib import Path

    from invfem.experiment.config import load_config
    from invfem.experiment.run import load_problem

    examples = Path(__file__).parent.parent / "configs" / "examples"
    joint = load_config(examples / "plate.yaml")
    problem = load_problem(joint.problem, seed=0, **joint.problem_options)
    assert [e["name"] for e in problem.info["experiments"]] == ["loaded", "heated"]
    assert problem.info["n_observations"] == 80 and problem.info["misfit_expected"] == 40
    assert problem.hessian_kind == "structured" and problem.regularization == 0.1
    alone = load_config(examples / "plate_heated.yaml")
    problem = load_problem(alone.problem, seed=0, **alone.problem_options)
    assert [e["name"] for e in problem.info["experiments"]] == ["heated"]

"""Issue 19, deliver 3: ``regularization: auto`` (discrepancy principle or L-curve), in run and compare."""

import json

import numpy as np
import pytest
import torch

from invfem import minimize
from invfem.cli import main
from invfem.errors import ConfigError
from invfem.experiment.regularization import (AutoRegularization, auto_spec, choose_regularization,
                                              l_curve_curvature, resolve_rule)
from invfem.problem import Problem


def _linear_gaussian(sigma=0.05, m=40, n=8, seed=0):
    """misfit (1/2) |(A theta - d) / sigma|^2 with d = A theta_true + sigma N(0, 1): alpha's fit in closed form."""
    rng = np.random.default_rng(seed)
    a = torch.as_tensor(rng.standard_normal((m, n)) / np.sqrt(m) * np.logspace(0, -3, n))
    truth = torch.as_tensor(rng.standard_normal(n))
    d = a @ truth + sigma * torch.as_tensor(rng.standard_normal(m))

    def build(alpha):
        loss = lambda t: 0.5 * (((a @ t - d) / sigma) ** 2).sum() + alpha * (t * t).sum()
        return Problem(name="linear", theta0=torch.zeros(n, dtype=torch.float64), loss=loss, kappa=lambda t, x: t,
                       info={"misfit_expected": m / 2, "regularization": alpha})

    def exact(alpha):
        t = torch.linalg.solve(a.T @ a / sigma ** 2 + 2 * alpha * torch.eye(n, dtype=torch.float64), a.T @ d / sigma ** 2)
        return float(0.5 * (((a @ t - d) / sigma) ** 2).sum()), float(t @ t)

    return build, exact, m / 2


def _fit(problem, x0):
    return minimize(problem.loss, x0, method="trust-exact", options={"maxiter": 200, "gtol": 1e-10})


def test_the_discrepancy_rule_picks_the_largest_alpha_at_the_noise_level():
    build, exact, level = _linear_gaussian()
    spec = AutoRegularization(rule="discrepancy", alphas=tuple(10.0 ** k for k in range(3, -7, -1)))
    chosen = choose_regularization(build, _fit, spec)
    misfits = {alpha: exact(alpha)[0] for alpha in spec.alphas}
    expected = max(alpha for alpha, misfit in misfits.items() if misfit <= level)
    assert chosen["rule"] == "discrepancy" and chosen["chosen"] == expected and chosen["level"] == level
    assert chosen["alphas"][-1] == expected                                     # the larger ones did not reach it
    for alpha, misfit in zip(chosen["alphas"], chosen["misfit"]):
        assert misfit == pytest.approx(misfits[alpha], rel=1e-8)
    assert all(m > level for m in chosen["misfit"][:-1]) and chosen["misfit"][-1] <= level


def test_the_discrepancy_rule_says_when_no_alpha_reaches_the_level():
    build, _, level = _linear_gaussian()
    spec = AutoRegularization(rule="discrepancy", alphas=(1e4, 1e3, 1e2), tau=0.5)     # 0.25 N/2: below the noise
    chosen = choose_regularization(build, _fit, spec)
    assert chosen["chosen"] == 1e2 and "no alpha of the grid" in chosen["warning"]


def test_the_l_curve_corner_is_the_point_of_largest_curvature():
    # an L: the misfit falls at a nearly fixed norm, then the norm grows at a nearly fixed misfit
    misfit = [100.0, 30.0, 10.0, 9.0, 8.5]
    norm2 = [1.0, 1.1, 1.3, 30.0, 900.0]
    curvature = l_curve_curvature(misfit, norm2)
    assert curvature[0] is None and curvature[-1] is None
    assert int(np.nanargmax([np.nan if c is None else c for c in curvature])) == 2

    build, exact, _ = _linear_gaussian()
    spec = AutoRegularization(rule="l-curve", alphas=tuple(10.0 ** k for k in range(3, -7, -1)))
    chosen = choose_regularization(build, _fit, spec)
    points = [exact(alpha) for alpha in spec.alphas]
    independent = l_curve_curvature([p[0] for p in points], [p[1] for p in points])
    best = max((c, i) for i, c in enumerate(independent) if c is not None)[1]
    assert chosen["rule"] == "l-curve" and chosen["chosen"] == spec.alphas[best]


def test_auto_takes_the_discrepancy_rule_with_sigma_and_the_l_curve_without():
    build, _, _ = _linear_gaussian()
    with_sigma = build(1.0)
    without = Problem(name="plain", theta0=with_sigma.theta0, loss=with_sigma.loss, kappa=with_sigma.kappa)
    assert resolve_rule(AutoRegularization(), with_sigma)[0] == "discrepancy"
    assert resolve_rule(AutoRegularization(), without) == ("l-curve", None)
    with pytest.raises(ConfigError, match="needs the noise level"):
        resolve_rule(AutoRegularization(rule="discrepancy"), without)


@pytest.mark.parametrize("value, message", [
    ("automatic", "must be a number or 'auto'"),
    ({"auto": {"rule": "gcv"}}, "rule must be one of"),
    ({"auto": {"alphas": [1, -1, 0.1]}}, "every alpha must be a number > 0"),
    ({"auto": {"alphas": [1, 1, 0.1]}}, "listed twice"),
    ({"auto": {"rule": "l-curve", "alphas": [1, 0.1]}}, "at least 3"),
    ({"auto": {"tua": 1}}, "unknown option(s) ['tua']"),
    ({"auto": {"maxiter": 0}}, "maxiter must be an integer >= 1"),
    ({"autos": {}}, "must be a number, 'auto' or"),
])
def test_bad_auto_values_are_one_line_errors(value, message):
    with pytest.raises(ConfigError) as info:
        auto_spec({"regularization": value})
    assert message in str(info.value) and "\n" not in str(info.value)


def _poisson(regularization, **extra):
    return {"mesh": {"unit_square": {"n": 5}}, "network": {"widths": [6]}, "regularization": regularization,
            "observations": {"synthetic": {"kappa_true": "1 + 0.5*x*y", "noise": 1e-3, "noise_kind": "gaussian",
                                           "at": 25, **extra}}}


def test_run_chooses_alpha_trains_at_it_and_draws_the_curve(tmp_path, capsys):
    config = tmp_path / "auto.yaml"
    config.write_text(json.dumps({"problem": "poisson", "seeds": [0], "method": "trust-exact",
                                  "options": {"maxiter": 40},
                                  "problem_options": _poisson({"auto": {"alphas": [10, 1, 0.1, 0.01]}}),
                                  "output": str(tmp_path / "out")}))
    assert main(["run", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    chosen = run["regularization"]
    assert chosen["rule"] == "discrepancy" and chosen["chosen"] in (10, 1, 0.1, 0.01)
    assert f"regularization: alpha = {chosen['chosen']:g}" in out
    reached = [a for a, m in zip(chosen["alphas"], chosen["misfit"]) if m <= chosen["level"]]
    assert reached == ([chosen["chosen"]] if "warning" not in chosen else [])
    assert (tmp_path / "out" / chosen["figure"]).stat().st_size > 0
    # the training ran at the chosen alpha: its final loss is the misfit plus alpha |theta|^2
    theta = torch.load(tmp_path / "out" / "theta_seed0.pt")
    from invfem.problems import poisson
    problem = poisson.make_problem(0, **_poisson(chosen["chosen"]))
    assert float(problem.loss(theta)) == pytest.approx(run["loss"], rel=1e-10)


def test_run_refuses_the_discrepancy_rule_without_sigma_before_any_fit(tmp_path, capsys):
    options = _poisson({"auto": {"rule": "discrepancy"}})
    options["observations"]["synthetic"].update(noise_kind="relative")
    config = tmp_path / "auto.yaml"
    config.write_text(json.dumps({"problem": "poisson", "seeds": [0], "method": "trust-exact",
                                  "problem_options": options, "output": str(tmp_path / "out")}))
    assert main(["run", str(config), "--quiet"]) == 2
    assert "discrepancy rule needs the noise level" in capsys.readouterr().err


def test_compare_chooses_alpha_per_run_and_keeps_the_choice(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(json.dumps({"problem": "poisson", "seeds": [0], "maxiter": 10,
                                 "methods": [{"method": "trust-exact"}],
                                 "problem_options": _poisson({"auto": {"alphas": [10, 1, 0.1]}}),
                                 "output": str(tmp_path / "study")}))
    assert main(["compare", str(study), "--quiet"]) == 0
    folder = next((tmp_path / "study").rglob("record.json")).parent
    record = json.loads((folder / "record.json").read_text())
    assert record["regularization"]["chosen"] in (10, 1, 0.1)
    saved = json.loads((folder / "regularization.json").read_text())
    assert saved["selection"]["chosen"] == record["regularization"]["chosen"]
    assert (folder / "regularization.png").is_file()

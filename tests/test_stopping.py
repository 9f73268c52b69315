"""Issue 19, deliver 3 (first part): the discrepancy principle as a stop, for invfem run and compare."""

import json

import pytest

from invfem.cli import main
from invfem.errors import ConfigError

PROBLEM = """problem: poisson
problem_options:
  mesh: {unit_square: {n: 8}}
  network: {widths: [10, 10]}
  source: 10
  observations: {synthetic: {kappa_true: "1 + 0.5*sin(2*x)*y", at: 20, noise: 0.01, noise_kind: gaussian}}
"""


def _run(tmp_path, name, extra):
    path = tmp_path / f"{name}.yaml"
    path.write_text(PROBLEM + extra + f"hessian_at_start: false\nhessian_at_end: false\noutput: {tmp_path / name}\n")
    assert main(["run", str(path), "--quiet"]) == 0
    return json.loads((tmp_path / name / "results.json").read_text())["runs"][0]


@pytest.mark.parametrize("method", ["l-bfgs-b", "trust-exact"])
def test_the_discrepancy_stop_ends_near_the_noise_level_before_the_fit_degrades(tmp_path, method):
    """sigma known (gaussian synthetic noise), 20 points, 151 parameters, no prior: fitting on
    overfits. The stop lands within 20% of N/2 = 10, with a smaller kappa error than the same
    run continued to five times its iterations. (With 30 points the stop comes early instead:
    its error is above the 5x run's; docs/user_problems.md shows both.)"""
    stopped = _run(tmp_path, "stopped", f"method: {method}\noptions: {{maxiter: 3000}}\nstop: discrepancy\n")
    summary = stopped["discrepancy"]
    assert summary["reached"] and summary["level"] == 10.0 and summary["iteration"] == stopped["nit"]
    assert 0.8 * 10.0 <= summary["misfit"] <= 10.0
    assert stopped["message"].startswith("discrepancy level reached: misfit")
    longer = _run(tmp_path, "longer", f"method: {method}\noptions: {{maxiter: {5 * stopped['nit']}, gtol: 0}}\n")
    assert longer["nit"] == 5 * stopped["nit"]
    assert stopped["kappa_error"] < longer["kappa_error"], (stopped["kappa_error"], longer["kappa_error"])


def test_the_discrepancy_stop_needs_sigma_and_a_valid_tau(tmp_path, capsys):
    path = tmp_path / "relative.yaml"
    path.write_text(PROBLEM.replace(", noise_kind: gaussian", "") + f"stop: discrepancy\noutput: {tmp_path / 'o'}\n")
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "stop: discrepancy needs the noise level" in err and not (tmp_path / "o" / "theta_seed0.pt").exists()
    from invfem.experiment.stopping import check_stop

    assert check_stop({"discrepancy": 1.1}) == {"discrepancy": 1.1} and check_stop("discrepancy") == {"discrepancy": 1.0}
    for bad in ({"discrepancy": 0}, {"discrepancy": "x"}, "morozov", {"tau": 1}):
        with pytest.raises(ConfigError, match="stop"):
            check_stop(bad)


def test_the_discrepancy_stop_in_a_study(tmp_path):
    from invfem.experiment import compare, load_study

    path = tmp_path / "study.yaml"
    path.write_text(PROBLEM + "seeds: [0]\nmaxiter: 3000\ndiagnostics_every: 0\nthreads_per_run: 1\n"
                    f"stop: {{discrepancy: 1.0}}\nmethods: [l-bfgs-b]\noutput: {tmp_path / 'study'}\n")
    record, = compare(load_study(path), quiet=True)
    assert record["discrepancy"]["reached"] and record["message"].startswith("discrepancy level reached")
    assert record["nit"] < 3000 and record["discrepancy"]["misfit"] <= 10.0

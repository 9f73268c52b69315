import json

import pytest
import yaml

from invfem.cli import main
from invfem.errors import ConfigError
from invfem.experiment import load_config


def test_run_writes_results_and_plot(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "problem": "poisson_fem", "problem_options": {"n": 3, "widths": [2, 6, 1]},
        "method": "adam", "options": {"lr": 0.01, "maxiter": 30}, "seeds": [0, 1],
        "output": str(tmp_path / "out")}))
    assert main(["run", str(cfg)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [0, 1]
    for r in results["runs"]:
        assert len(r["history"]) == 31          # the start and 30 iterations
        assert r["loss"] < r["loss0"]
        assert r["hessian0"]["symmetry_error"] < 1e-10
        assert len(r["hessian0"]["eigenvalues"]) == 25
    for seed in ("0", "1"):
        laps = results["timings"]["seeds"][seed]
        assert set(laps) == {"setup", "hessian0", "training", "after"} and all(t > 0 for t in laps.values())
    assert results["timings"]["loss_plot"] > 0
    assert results["timings"]["total"] >= sum(sum(v.values()) for v in results["timings"]["seeds"].values())
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000


def test_command_line_entry_flushes_and_returns_the_code(tmp_path):
    """``invfem run`` ends with os._exit: what it printed and wrote must all be there, and its code."""
    import subprocess
    import sys
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "problem": "poisson_fem", "problem_options": {"n": 3, "widths": [2, 6, 1]},
        "options": {"maxiter": 3}, "output": str(tmp_path / "out")}))
    marked = ("import atexit, sys; atexit.register(lambda: print('interpreter teardown ran')); "
              "from invfem.cli import entry; sys.argv[0] = 'invfem'; entry()")
    done = subprocess.run([sys.executable, "-c", marked, "run", str(cfg), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"results written to {tmp_path / 'out'}/")     # flushed, and no teardown
    assert json.loads((tmp_path / "out" / "results.json").read_text())["timings"]["loss_plot"] > 0
    cfg.write_text("problem: no_such_problem\n")
    done = subprocess.run([sys.executable, "-m", "invfem.cli", "run", str(cfg)], capture_output=True, text=True)
    assert done.returncode == 2 and "no_such_problem" in done.stderr


def test_run_defaults_to_trust_exact_with_history_and_plot(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "problem": "poisson_fem", "problem_options": {"n": 3, "widths": [2, 6, 1]},
        "options": {"maxiter": 15}, "hessian_at_start": False, "output": str(tmp_path / "out")}))
    assert main(["run", str(cfg)]) == 0
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["method"] == "trust-exact"
    h = run["history"]
    assert len(h) == run["nit"] + 1 and run["nit"] >= 1
    assert all(b["f"] <= a["f"] for a, b in zip(h, h[1:]))
    assert {"radius", "rho", "accepted", "inner_iterations", "hard_case", "negative_curvature"} <= set(h[1])
    assert run["loss"] < 0.5 * run["loss0"]
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000


def test_config_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("problem: poisson_fem\nmethd: adam\n")
    with pytest.raises(ConfigError, match="methd"):
        load_config(cfg)
    cfg.write_text("problem: poisson_fem\nmethod: trust-magic\n")
    with pytest.raises(ConfigError, match="trust-magic"):
        load_config(cfg)
    cfg.write_text("problem: poisson_fem\noptions: {radius: 1}\n")
    with pytest.raises(ConfigError, match="radius"):
        load_config(cfg)
    cfg.write_text("problem: no_such_problem\n")
    assert main(["run", str(cfg), "--output", str(tmp_path / "o")]) == 2
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["poisson_fem", "poisson_residual", "heat_residual", "poisson_nonlinear_fem",
                                  "heat_fem", "poisson_fem_trf"])
def test_every_shipped_config_trains(tmp_path, name):
    from pathlib import Path

    from invfem.experiment import run_experiment

    path = Path(__file__).parent.parent / "configs" / f"{name}.yaml"
    config = load_config(path)
    tiny = {**config.problem_options, "n": 3,
            "widths": [2 if "heat" in name or name.startswith("poisson_fem") else 1, 4, 1]}
    if "n_steps" in tiny:
        tiny["n_steps"] = 3
    config = load_config(path, problem_options=tiny, options={**config.options, "maxiter": 5},
                         output=str(tmp_path / name))
    results = run_experiment(config, log=lambda *a: None)
    run = results["runs"][0]
    assert run["method"] == config.method
    assert run["loss"] < run["loss0"]

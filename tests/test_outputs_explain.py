"""Issue 19, deliver 5: outputs that explain themselves (statuses, counts, timings, plots, reprs,
progress, overrides). The heat field names, its observation cloud and the XDMF reader are tested
in test_user_problems.test_heat_run_writes_an_xdmf_time_series."""

import json
import time

import pytest
import torch

from invfem.cli import main
from invfem.optim import minimize


def test_statuses_say_how_far_the_run_got():
    quadratic = lambda x: ((x - torch.arange(3.0)) ** 2 * torch.tensor([1.0, 10.0, 100.0])).sum() + (x ** 4).sum()
    x0 = torch.zeros(3, dtype=torch.float64)
    budget = minimize(quadratic, x0, method="bfgs", options={"maxiter": 2, "gtol": 1e-8})
    assert budget.status == 1
    assert budget.message.startswith("iteration budget used (maxiter = 2): |g| = ")
    ratio = float(budget.optimality) / 1e-8
    assert f"{ratio:.0f}x gtol = 1e-08" in budget.message
    done = minimize(quadratic, x0, method="trust-exact", options={"maxiter": 100, "gtol": 1e-8})
    assert done.status == 0 and done.message.startswith("converged: |g| = ") and "below gtol = 1e-08" in done.message


def _config(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text + f"output: {tmp_path / 'out'}\n")
    return path


def test_run_log_counts_zero_eigenvalues_and_the_overrides(tmp_path, capsys):
    config = _config(tmp_path, "problem: poisson_fem\nproblem_options: {n: 3, widths: [2, 4, 1]}\nmethod: adam\n"
                               "options: {lr: 0.01, maxiter: 50}\nseeds: [0, 1]\n")
    assert main(["run", str(config), "--quiet", "--method", "trust-exact", "--maxiter", "3", "--seeds", "2",
                 "--output", str(tmp_path / "over")]) == 0
    out = capsys.readouterr().out
    assert "--method trust-exact: the config's options ['lr'] do not apply to it and are dropped" in out
    assert "positive /" in out and "zero (|lambda| <= 1e-06 |lambda|_max) of 17" in out
    results = json.loads((tmp_path / "over" / "results.json").read_text())
    run, = results["runs"]
    assert run["seed"] == 2 and run["method"] == "trust-exact" and run["nit"] == 3
    assert run["message"].startswith("iteration budget used (maxiter = 3)")
    assert set(results["timings"]) == {"seeds", "loss_plot", "total"} and "timings" not in run
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["run", str(config), "--maxiter", "x"])
    assert main(["run", str(config), "--quiet", "--maxiter", "0"]) == 2
    assert "--maxiter must be an integer >= 1" in capsys.readouterr().err
    assert main(["run", str(config), "--quiet", "--method", "nope"]) == 2
    assert "--method: unknown method 'nope'" in capsys.readouterr().err


def test_kappa_plot_has_axes_colour_bars_the_error_and_the_points(monkeypatch, tmp_path):
    import invfem.experiment.outputs as outputs
    from invfem.problems import poisson

    figures = []
    monkeypatch.setattr(outputs, "save_figure", lambda fig, path, **kw: figures.append(fig) or path)
    p = poisson.make_problem(0, mesh={"lshape": {"refine": 1}}, network={"widths": [3]},
                             observations={"synthetic": {"kappa_true": "1 + x^2", "at": 12}})
    outputs.plot_kappa(tmp_path / "k.png", p, p.theta0)
    fig, = figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels][:2] == ["learned $\\kappa_\\theta$", "true $\\kappa$"]
    assert len(fig.axes) == 2 * len(panels)                                  # one colour bar per panel
    assert all(ax.get_xlabel() == "x" for ax in panels) and panels[0].get_ylabel() == "y"
    assert all(len(ax.get_xticks()) > 0 for ax in panels)
    with torch.no_grad():
        xy = p.info["space"].dof_coordinates[p.info["space"].basis.nodal_dofs[0]]
        learned, true = p.kappa(p.theta0, xy), p.kappa_true(xy)
    error = float(torch.linalg.norm(learned - true) / torch.linalg.norm(true))
    assert fig._suptitle.get_text() == f"relative L2 error of kappa at the mesh vertices: {error:.2%}"
    assert len(panels[0].lines[0].get_xdata()) == 12                         # the observation points


def test_reprs_are_short():
    from invfem.experiment.run import load_problem
    from invfem.law import LearnedLaw

    p = load_problem("poisson_fem", n=3)
    assert repr(p) == "Problem('poisson_fem', 921 parameters, n_dofs 16, n_quad 54, n_observations 4, residual yes, structured Hessian yes)"
    assert repr(LearnedLaw(p.kappa, p.theta0, "x")) == \
        "LearnedLaw(kappa(x), widths [2, 20, 20, 20, 1], tanh, 921 parameters on cpu)"


def test_progress_redraws_at_least_once_a_second_during_a_long_phase(monkeypatch):
    from invfem.experiment.config import ExperimentConfig
    from invfem.experiment.run import _Progress

    progress = _Progress(ExperimentConfig(problem="poisson_fem", options={"maxiter": 7}), seed=0)
    progress.phase("start Hessian (921 x 921)")
    redraws = []
    monkeypatch.setattr(progress.bar, "refresh", lambda *a, **k: redraws.append(time.perf_counter()))
    time.sleep(2.5)                                                       # a phase with no iterations
    assert len(redraws) >= 2
    assert progress.bar.total == 7 and progress.bar.desc == "seed 0: start Hessian (921 x 921)"
    progress({"iter": 3, "f": 1.0, "gnorm": 0.1})
    assert progress.bar.n == 3
    progress.close()


def test_a_large_hessian_phase_says_about_how_long_it_takes(monkeypatch):
    from types import SimpleNamespace

    from invfem import resources
    from invfem.experiment.run import _hessian_eta

    monkeypatch.setitem(resources._GEMM_RATE, "rate", 1e9)                   # 1 Gflop/s
    big = SimpleNamespace(n_params=1000, info={"n_quad": 6000})
    assert _hessian_eta(big, SimpleNamespace(kind="structured")) == ", about 12 s"   # 2 P^2 Q / rate
    joint = SimpleNamespace(n_params=1000, info={"n_quad": 6000, "experiments": [1, 2]})
    assert _hessian_eta(joint, SimpleNamespace(kind="structured")) == ", about 24 s"
    assert _hessian_eta(big, SimpleNamespace(kind="generic")) == ""
    assert _hessian_eta(SimpleNamespace(n_params=100, info={"n_quad": 6000}), SimpleNamespace(kind="structured")) == ""


def test_slow_dense_hessians_are_warned_about_before_any_work(monkeypatch, tmp_path, capsys):
    from invfem import resources

    monkeypatch.setitem(resources._GEMM_RATE, "rate", 1e2)          # a very slow machine: 100 flop/s
    config = _config(tmp_path, "problem: poisson\nmethod: trust-exact\noptions: {maxiter: 3}\nlaplace_samples: 10\n"
                               "problem_options: {mesh: {unit_square: {n: 3}}, network: {widths: [4]}, "
                               "regularization: 0.1, observations: {synthetic: {kappa_true: 1}}}\n")
    main(["run", str(config), "--quiet"])
    out = capsys.readouterr().out
    assert "warning: method trust-exact forms the 17 x 17 Hessian every 1 iteration(s): about" in out
    assert "trust-krylov or trust-ncg work on Hessian-vector products" in out
    assert "warning: hessian_at_start: the 17 x 17 Hessian takes about" in out
    assert "warning: laplace_samples: the 17 x 17 Hessian and its eigendecomposition take about" in out
    monkeypatch.setitem(resources._GEMM_RATE, "rate", 1e12)
    main(["run", str(config), "--quiet"])
    assert "warning: method" not in capsys.readouterr().out

"""``invfem run``: build the problem, inspect it at theta0, train, write the results."""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from invfem.derivatives import symmetry_error, value_and_grad
from invfem.errors import ConfigError
from invfem.experiment.config import ExperimentConfig
from invfem.optim import METHODS, minimize
from invfem.problem import Problem
from invfem.structured import hessian_path


def load_problem(name: str, seed: int = 0, **options) -> Problem:
    """``make_problem(seed=seed, **options)`` of a shipped problem (``invfem.problems.<name>``) or of a
    user's file (``name`` a path ending in ``.py``, loaded by path: no package install needed)."""
    module = problem_module(name)
    if not hasattr(module, "make_problem"):
        raise ConfigError(f"{name}: defines no make_problem(seed, **options)")
    return module.make_problem(seed=seed, **options)


def shipped_problems() -> list[str]:
    """Names of the problems in ``invfem.problems``."""
    import invfem.problems
    return sorted(m.name for m in pkgutil.iter_modules(invfem.problems.__path__) if not m.name.startswith("_"))


def problem_module(name: str):
    """The module that defines a problem: a shipped one by name or a ``.py`` file by path."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"problem file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"invfem_user_problem_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: say which file failed, keep the cause
            raise ConfigError(f"{path}: could not be loaded: {type(exc).__name__}: {exc}") from exc
        return module
    if name not in shipped_problems():
        raise ConfigError(f"unknown problem {name!r}; valid: {shipped_problems()} or a path to a .py file "
                          "defining make_problem(seed, **options)")
    return importlib.import_module(f"invfem.problems.{name}")


def hessian_summary(h: torch.Tensor, rel_threshold: float = 1e-6) -> dict:
    """Eigenvalues and the sign counts of reference 000 (|lambda| above 1e-6 lambda_max)."""
    eig = torch.linalg.eigvalsh(0.5 * (h + h.T)).cpu().numpy()      # torch's BLAS pool, not numpy's
    cut = rel_threshold * np.abs(eig).max()
    return {"eigenvalues": eig.tolist(), "n_positive": int((eig > cut).sum()), "n_negative": int((eig < -cut).sum()),
            "lambda_min": float(eig[0]), "lambda_max": float(eig[-1]), "symmetry_error": symmetry_error(h)}


def run_experiment(config: ExperimentConfig, log=print) -> dict:
    """Run every seed of ``config``; write ``results.json`` and ``loss.png`` under ``config.output``."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    # matplotlib's import (~1 s) overlaps the training, which runs in torch with the GIL released
    plotting = threading.Thread(target=_import_plotting, daemon=True)
    plotting.start()
    runs = []
    for seed in config.seeds:
        device = {} if config.device is None else {"device": config.device}
        problem = load_problem(config.problem, seed=seed, **device, **config.problem_options)
        f0, g0 = value_and_grad(problem.loss, problem.theta0)
        record = {"seed": seed, "loss0": float(f0), "gnorm0": float(torch.linalg.norm(g0))}
        exact_hessian = hessian_path(problem, chunk_size=config.hessian_chunk)
        record["hessian_kind"] = exact_hessian.kind
        log(f"[seed {seed}] {problem.name}: {problem.n_params} parameters, loss0 = {float(f0):.6e}, "
            f"|g0| = {record['gnorm0']:.3e}")
        if config.hessian_at_start:
            summary = hessian_summary(exact_hessian.function(problem.theta0))
            record["hessian0"] = summary
            log(f"[seed {seed}] Hessian at theta0: lambda in [{summary['lambda_min']:.3e}, {summary['lambda_max']:.3e}], "
                f"{summary['n_positive']} positive / {summary['n_negative']} negative, asymmetry {summary['symmetry_error']:.1e}")
        # the dense-Hessian methods get the problem's exact Hessian by its fastest path; Krylov methods use HVPs
        dense = METHODS[config.method].derivatives == "hessian"
        result = minimize(problem.loss, problem.theta0, method=config.method, options=config.options,
                          hess=exact_hessian.function if dense else None, bounds=problem.bounds)
        log(f"[seed {seed}] {config.method}: {result.nit} iterations, loss {result.fun:.6e}, "
            f"|g| = {float(torch.linalg.norm(result.jac)):.3e} ({result.message})")
        record.update({"method": config.method, "loss": result.fun, "nit": result.nit, "status": result.status,
                       "message": result.message, "history": result.history})
        torch.save(result.x.cpu(), out / f"theta_seed{seed}.pt")
        runs.append(record)
    results = {"config": asdict(config), "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plotting.join()
    _plot_losses(runs, out / "loss.png", config)
    log(f"results written to {out}/")
    return results


def _import_plotting() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _plot_losses(runs, path: Path, config: ExperimentConfig) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in runs:
        ax.semilogy([h["f"] for h in r["history"]], label=f"{r['method']} seed {r['seed']}")
    ax.set_xlim(left=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(config.problem)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)

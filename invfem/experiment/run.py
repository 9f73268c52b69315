"""``invfem run``: build the problem, inspect it at theta0, train, write the results."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from invfem.derivatives import value_and_grad
from invfem.errors import ConfigError, InvalidTrialPoint, InvfemError, NonFiniteError
from invfem.diagnostics import kappa_error, laplace, spectrum
from invfem.diagnostics.identifiability import identifiability
from invfem.diagnostics.laplace import NotAMinimumError
from invfem.diagnostics.low_rank import low_rank_hessian
from invfem.experiment.config import ExperimentConfig
from invfem.experiment.outputs import attempt_or_record, write_outputs
from invfem.experiment.regularization import (auto_spec, choose_regularization, plot_regularization, resolve_rule,
                                               with_alpha)
from invfem.experiment.stopping import DiscrepancyStop, chain
from invfem.files import check_writable, save_figure, save_torch, write_json
from invfem.joint import experiment_misfits
from invfem.optim import METHODS, minimize
from invfem.problem import Problem
from invfem.resources import check_dense_hessian, hessian_seconds
from invfem.structured import hessian_path


def load_problem(name: str, seed: int = 0, **options) -> Problem:
    """``make_problem(seed=seed, **options)`` of a shipped problem (``invfem.problems.<name>``) or of a
    user's file (``name`` a path ending in ``.py``, loaded by path: no package install needed)."""
    module = problem_module(name)
    if not hasattr(module, "make_problem"):
        raise ConfigError(f"{name}: defines no make_problem(seed, **options)")
    return module.make_problem(seed=seed, **options)


def check_problem_options(name: str, options: dict) -> None:
    """ConfigError (one line, naming the key) for options ``make_problem`` of ``name`` cannot take.

    A problem module may define ``check_options(options)`` (the generic builders do: every
    option, nested ones included, with its type and value); otherwise the options are checked
    against ``make_problem``'s signature: unknown keys (unless it takes ``**options``) and values
    whose type does not match the default's (a number for a number, a list for a tuple, ...).
    """
    module = problem_module(name)
    if not hasattr(module, "make_problem"):
        raise ConfigError(f"{name}: defines no make_problem(seed, **options)")
    if hasattr(module, "check_options"):
        module.check_options(dict(options))
        return
    parameters = dict(inspect.signature(module.make_problem).parameters)
    parameters.pop("seed", None)
    if "seed" in options:
        raise ConfigError("problem_options.seed: seeds are set by the top-level key seeds")
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    valid = sorted(k for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD and k != "device")
    for key, value in options.items():
        if key not in parameters or key == "device":
            if open_ended:
                continue
            hint = " (set device at the top level)" if key == "device" else ""
            raise ConfigError(f"problem_options: unknown option {key!r} of {name}{hint}; valid: {valid}")
        expected = _expected_type(parameters[key].default)
        if expected is not None and not _matches(value, expected):
            raise ConfigError(f"problem_options.{key} must be {expected} (default {parameters[key].default!r}), "
                              f"got {value!r}")


def _expected_type(default) -> str | None:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        return "a list"
    return None                        # None or a callable default: anything the problem accepts


def _matches(value, expected: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"true or false": isinstance(value, bool), "an integer": number and float(value).is_integer(),
            "a number": number, "a string": isinstance(value, str),
            "a list": isinstance(value, (list, tuple))}[expected]


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
    """Eigenvalues and the sign counts of reference 000 (|lambda| above 1e-6 lambda_max): :func:`invfem.diagnostics.spectrum`."""
    return spectrum(h, rel_threshold)


def run_experiment(config: ExperimentConfig, log=print, progress: bool = False) -> dict:
    """Run every seed of ``config``; write ``results.json``, ``loss.png`` and, per seed, the trained
    ``theta``, the law (``kappa_seed<k>.pt``), ParaView fields and kappa's plot under ``config.output``
    (see :mod:`invfem.experiment.outputs`). ``progress``: a bar of the iterations (loss and |g|
    in its postfix, the phase and an ETA) on stderr. Every wall time is in ``results["timings"]`` (s):
    per seed (``seeds["0"]``...) ``setup`` (problem, loss and gradient at theta0), ``hessian0``,
    ``training``, ``after`` (Hessian at the result, kappa's error, Laplace, files), with
    ``regularization: auto`` ``regularization`` (the fits that chose alpha); then
    ``loss_plot`` and ``total``.

    Nothing finished is lost: every file is written atomically (:mod:`invfem.files`), and
    ``results.json`` after each seed. A seed that fails (its problem, theta0, the training) is
    recorded as ``{"seed", "failed": true, "phase", "error"}`` and the next seed runs (an invfem error
    while the first seed's problem is built is the configuration's: it stops the command); a failure
    after the training (the Hessian at the result, Laplace, a file) keeps the trained result and
    is named in the run's ``failures`` (phase or file -> error), as is a failed ``loss.png`` in
    ``results["failures"]``. Problems of the configuration itself (an output folder that cannot be
    written, Laplace bands without a prior) stop the command before any training."""
    out = check_writable(config.output)
    # matplotlib's import (~1 s) overlaps the training, which runs in torch with the GIL released
    plotting = threading.Thread(target=_import_plotting, daemon=True)
    plotting.start()
    runs, laps = [], {}
    results = {"config": asdict(config), "runs": runs, "timings": {"seeds": laps}}
    start = time.perf_counter()
    for seed in config.seeds:
        clock = _Clock()
        runs.append(_run_seed(config, seed, out, log, progress, clock))
        laps[str(seed)] = clock.laps
        write_json(out / "results.json", results)        # after every seed: nothing lost if a later one dies
    clock = _Clock()
    plotting.join()
    trained = [r for r in runs if not r.get("failed")]
    try:
        if trained:
            _plot_losses(trained, out / "loss.png", config)
    except Exception as exc:  # the figure only: the results are written
        results["failures"] = {"loss.png": f"{type(exc).__name__}: {exc}"}
        log(f"loss.png could not be written ({results['failures']['loss.png']})")
    clock.lap("loss_plot")
    results["timings"].update(loss_plot=clock.laps["loss_plot"], total=round(time.perf_counter() - start, 4))
    write_json(out / "results.json", results)
    failed = [r["seed"] for r in runs if r.get("failed")]
    log(f"results written to {out}/" + (f" ({len(failed)} of {len(runs)} seeds failed: {failed})" if failed else ""))
    return results


def run_failures(results: dict) -> list[str]:
    """One line per seed that failed and per output that could not be written, from :func:`run_experiment`'s results."""
    lines = [f"seed {r['seed']} failed in its {r.get('phase', 'run')}: {r['error']}" for r in results["runs"]
             if r.get("failed")]
    lines += [f"seed {r['seed']}: {what} failed: {error}" for r in results["runs"] if not r.get("failed")
              for what, error in r.get("failures", {}).items()]
    lines += [f"{what} failed: {error}" for what, error in results.get("failures", {}).items()]
    return lines


def _run_seed(config: ExperimentConfig, seed: int, out: Path, log, progress: bool, clock: "_Clock") -> dict:
    """One seed: its record, or ``{"seed", "failed", "phase", "error"}`` where it could not be trained.
    An invfem error while the first seed's problem is built (the configuration's options, files, sizes) propagates."""
    record = {"seed": seed}
    show = _Progress(config, seed) if progress else _Quiet()
    try:
        return _seed_phases(config, seed, out, log, show, clock, record)
    finally:
        show.close()


def _seed_phases(config: ExperimentConfig, seed: int, out: Path, log, show, clock: "_Clock", record: dict) -> dict:
    """The phases of one seed (``show`` displays them, ``clock`` times them)."""
    phase, building, selection_failures = "setup", False, {}
    try:
        device = {} if config.device is None else {"device": config.device}
        options, auto = config.problem_options, auto_spec(config.problem_options)
        building = True                    # the problem's construction and the checks of the config against it
        problem = load_problem(config.problem, seed=seed, **device,
                               **(with_alpha(options, auto.alphas[0]) if auto else options))
        _check_before_training(config, problem)
        if auto is not None:
            resolve_rule(auto, problem)            # the rule must apply to these data
        if seed == config.seeds[0]:
            for warning in dense_time_warnings(config, problem):
                log(f"warning: {warning}")
        building = False
        if auto is not None:
            phase = "choice of the regularization"
            first = {auto.alphas[0]: problem}
            build = lambda alpha: first.pop(alpha) if alpha in first else \
                load_problem(config.problem, seed=seed, **device, **with_alpha(options, alpha))
            callback = show if isinstance(show, _Progress) else None
            selection = choose_regularization(build, lambda p, x0: _train(p, config, x0, callback, auto.maxiter), auto,
                                              log=lambda line: log(f"[seed {seed}] regularization: {line}"),
                                              phase=show.phase,
                                              error=kappa_error if problem.kappa_true is not None else None)
            record["regularization"] = selection
            log(f"[seed {seed}] regularization: alpha = {selection['chosen']:g}, {selection['reason']} "
                f"({len(selection['alphas'])} fits, {selection['seconds_total']:.1f} s)")
            if "warning" in selection:
                log(f"[seed {seed}] warning: {selection['warning']}")
            figure = f"regularization_seed{seed}.png"
            if attempt_or_record(selection_failures, figure, lambda: plot_regularization(
                    out / figure, selection, f"{config.problem}, seed {seed}")) is not None:
                record["regularization"]["figure"] = figure
            problem = load_problem(config.problem, seed=seed, **device, **with_alpha(options, selection["chosen"]))
            clock.lap("regularization")
        show.phase("loss and gradient at theta0")
        if not bool(torch.isfinite(problem.theta0).all()):
            raise NonFiniteError(f"theta0 of {problem.name} (seed {seed}) holds NaN or inf")
        f0, g0 = value_and_grad(problem.loss, problem.theta0)
        if not (bool(torch.isfinite(f0)) and bool(torch.isfinite(g0).all())):
            raise NonFiniteError(f"the loss or its gradient at theta0 is not finite (loss {float(f0)})")
        record.update({"loss0": float(f0), "gnorm0": float(torch.linalg.norm(g0))})
        exact_hessian = hessian_path(problem, chunk_size=config.hessian_chunk)
        record["hessian_kind"] = exact_hessian.kind
        clock.lap("setup")
        log(f"[seed {seed}] {problem.name}: {problem.n_params} parameters, loss0 = {float(f0):.6e}, "
            f"|g0| = {record['gnorm0']:.3e}")
        if config.hessian_at_start:
            phase = "Hessian at theta0"
            if problem.n_params > LOW_RANK_ABOVE:
                summary = low_rank_summary(_dominant_pairs(problem, problem.theta0, config, seed, show.phase, "start"),
                                           problem.regularization)
                record["hessian0"] = summary
                log(f"[seed {seed}] Hessian at theta0: {low_rank_words(summary)}")
            else:
                show.phase(f"start Hessian ({problem.n_params} x {problem.n_params}"
                           f"{_hessian_eta(problem, exact_hessian)})")
                summary = hessian_summary(exact_hessian.function(problem.theta0))
                record["hessian0"] = summary
                log(f"[seed {seed}] Hessian at theta0: lambda in [{summary['lambda_min']:.3e}, "
                    f"{summary['lambda_max']:.3e}], {sign_counts(summary)}, asymmetry {summary['symmetry_error']:.1e}")
            clock.lap("hessian0")
        # the dense-Hessian methods get the problem's exact Hessian by its fastest path; Krylov methods use HVPs
        phase = "training"
        show.phase(config.method)
        stopper = DiscrepancyStop(problem, config.stop["discrepancy"]) if config.stop else None
        result = _train(problem, config, problem.theta0, chain(show if isinstance(show, _Progress) else None, stopper),
                        path=exact_hessian)
        clock.lap("training")
    except InvfemError as exc:
        if building and seed == config.seeds[0] and not isinstance(exc, InvalidTrialPoint):
            raise                 # the configuration itself (its options, files, sizes): stop before any training
        return _failed(record, phase, exc, log)
    except Exception as exc:  # this seed only (kappa <= 0 at theta0, a singular matrix, ...): the others go on
        return _failed(record, phase, exc, log)
    message = stopper.message if stopper is not None and stopper.reached else result.message
    log(f"[seed {seed}] {config.method}: {result.nit} iterations, loss {result.fun:.6e}, {message}, "
        f"{result.history[-1].get('time', float('nan')):.1f} s")
    record.update({"method": config.method, "loss": result.fun, "nit": result.nit, "status": result.status,
                   "message": message, "history": result.history})
    if stopper is not None:
        record["discrepancy"] = stopper.summary()
    failures = selection_failures
    try:
        save_torch(out / f"theta_seed{seed}.pt", result.x.cpu())
    except OSError as exc:
        failures[f"theta_seed{seed}.pt"] = f"{type(exc).__name__}: {exc}"
    record.update(_after_training(problem, result.x, exact_hessian, config, seed, out, log, failures, show.phase))
    if failures:
        record["failures"] = failures
        for what, error in failures.items():
            log(f"[seed {seed}] {what} failed ({error}); the trained result is kept")
    clock.lap("after")
    return record


def _train(problem: Problem, config: ExperimentConfig, x0: torch.Tensor, callback=None, maxiter: int | None = None,
           path=None):
    """``config.method`` on ``problem`` from ``x0`` with the problem's exact derivatives by their
    fastest path (``path``, a :class:`~invfem.structured.HessianPath`, where already picked: the
    dense Hessian for the dense methods, its product for the Krylov ones); ``maxiter`` overrides
    the options'."""
    if path is None:
        path = hessian_path(problem, chunk_size=config.hessian_chunk)
    options = config.options if maxiter is None else {**config.options, "maxiter": maxiter}
    return minimize(problem.loss, x0, method=config.method, options=options,
                    **path.minimize_arguments(METHODS[config.method].derivatives), bounds=problem.bounds,
                    callback=callback, residual=problem.residual, residual_jacobian=problem.solver_jacobian)


#: a dense-Hessian phase expected to take longer than this (s) is warned about before any work
SLOW_HESSIAN_SECONDS = 60.0

#: a training expected to spend longer than this (s) forming Hessians is warned about
SLOW_TRAINING_SECONDS = 1800.0


def dense_time_warnings(config: ExperimentConfig, problem: Problem) -> list[str]:
    """One line per part of ``config`` whose P x P Hessians are expected to be slow (the estimate
    of :func:`invfem.resources.hessian_seconds`, structured Hessians only), with the matrix-free
    alternative: a dense method's Hessian at every iteration, ``hessian_at_start`` /
    ``hessian_at_end``, and Laplace's Hessian with its eigendecomposition (~9 P^3 flops)."""
    from invfem.optim.options import parse_options
    from invfem.resources import gemm_rate

    one = _structured_seconds(problem, hessian_path(problem).kind)
    if one is None:
        return []
    p = problem.n_params
    size = f"the {p} x {p} Hessian"
    out = []
    if METHODS[config.method].derivatives == "hessian":
        options = parse_options(config.method, METHODS[config.method].options, config.options)
        every = getattr(options, "hessian_every", 1) or 1
        total = one * getattr(options, "maxiter", 1) / every
        if one > SLOW_HESSIAN_SECONDS or total > SLOW_TRAINING_SECONDS:
            out.append(f"method {config.method} forms {size} every {every} iteration(s): about {one:.0f} s each on "
                       f"this machine, up to {total / 3600:.1f} h for maxiter {options.maxiter}; trust-krylov or "
                       "trust-ncg work on Hessian-vector products (about 3 gradients each, no P x P matrix)")
    if p > LOW_RANK_ABOVE:
        return out                            # the diagnostics take dominant eigenpairs from HVPs there
    for key, label in (("hessian_at_start", "hessian_at_start"), ("hessian_at_end", "hessian_at_end")):
        if getattr(config, key) and one > SLOW_HESSIAN_SECONDS:
            out.append(f"{label}: {size} takes about {one:.0f} s here; set {key}: false to skip it")
    if config.laplace_samples and config.laplace_rank is None:
        seconds = one + 9.0 * float(p) ** 3 / gemm_rate()
        if seconds > SLOW_HESSIAN_SECONDS:
            out.append(f"laplace_samples: {size} and its eigendecomposition take about {seconds:.0f} s here; "
                       "laplace_rank: r builds the posterior from about 4 r Hessian-vector products instead")
    return out


#: above this many parameters the spectra, identifiability and Laplace of ``invfem run`` come from the dominant
#: eigenpairs of the misfit Hessian (:func:`invfem.diagnostics.low_rank.low_rank_hessian`), not the P x P matrix
LOW_RANK_ABOVE = 5000

#: the eigenpairs taken then, unless ``laplace_rank`` says how many
DEFAULT_RANK = 100


def _dominant_pairs(problem: Problem, theta: torch.Tensor, config: ExperimentConfig, seed: int, phase, where: str):
    """The ``laplace_rank`` (else :data:`DEFAULT_RANK`) dominant eigenpairs of the misfit Hessian at
    ``theta`` from HVPs (:func:`invfem.diagnostics.low_rank.low_rank_hessian`), the phase shown."""
    rank = config.laplace_rank or DEFAULT_RANK
    phase(f"{where} Hessian: {rank} dominant eigenpairs from HVPs")
    return low_rank_hessian(problem, theta, rank, seed=seed, misfit=True)


def low_rank_summary(low, alpha: float) -> dict:
    """The spectrum at a point from its dominant eigenpairs: the loss's eigenvalues (misfit + 2 alpha)
    among them, their signs, the eigensolver's cost and error bounds."""
    lam = low.eigenvalues + 2.0 * alpha
    return {"low_rank": True, "rank": int(lam.numel()), "n_hvp": low.n_hvp, "lambda_max": float(lam.max()),
            "lambda_min": float(lam.min()), "n_positive": int((lam > 0).sum()), "n_negative": int((lam < 0).sum()),
            "eigenvalues": lam.tolist(), "eigenvalue_error_max": float(low.eigenvalue_errors.max()),
            "norm_error_estimate": low.error_estimate}


def low_rank_words(summary: dict) -> str:
    """``the 100 dominant eigenvalues (440 HVPs): lambda in [...], 60 positive / 40 negative; ...``."""
    return (f"the {summary['rank']} dominant eigenvalues ({summary['n_hvp']} HVPs, no P x P matrix): lambda in "
            f"[{summary['lambda_min']:.3e}, {summary['lambda_max']:.3e}], {summary['n_positive']} positive / "
            f"{summary['n_negative']} negative; each within {summary['eigenvalue_error_max']:.1e} of an exact one, "
            f"the rest of the spectrum below about {summary['norm_error_estimate']:.1e}")


def _structured_seconds(problem: Problem, kind: str) -> float | None:
    """The estimated seconds of ``problem``'s P x P Hessian on the ``kind`` path picked for it: its
    network bound 2 P^2 Q (Q over all experiments) at this machine's GEMM rate
    (:func:`invfem.resources.hessian_seconds`); None for the generic path or without Q."""
    if kind != "structured":
        return None
    points = problem.info.get("n_quad")
    if points and problem.info.get("experiments"):
        points *= len(problem.info["experiments"])
    return hessian_seconds(problem.n_params, points)


def _hessian_eta(problem: Problem, path) -> str:
    """``, about 40 s`` for a structured Hessian expected to take over 2 s; nothing otherwise."""
    seconds = _structured_seconds(problem, path.kind) if problem.n_params >= 300 else None
    return f", about {seconds:.0f} s" if seconds is not None and seconds > 2 else ""


def sign_counts(summary: dict) -> str:
    """``65 positive / 60 negative / 796 zero (|lambda| <= 1e-06 lambda_max) of 921``."""
    n = summary["n_positive"] + summary["n_negative"] + summary["n_zero"]
    return (f"{summary['n_positive']} positive / {summary['n_negative']} negative / {summary['n_zero']} zero "
            f"(|lambda| <= {summary['eps']:g} |lambda|_max) of {n}")


def _failed(record: dict, phase: str, exc: Exception, log) -> dict:
    error = f"{type(exc).__name__}: {exc}"
    log(f"[seed {record['seed']}] failed in its {phase}: {error}")
    return {"seed": record["seed"], "failed": True, "phase": phase, "error": error}


def _check_before_training(config: ExperimentConfig, problem: Problem) -> None:
    """What the configuration asks of this problem that cannot work, found before any training:
    Laplace without a prior, and a P x P Hessian larger than the memory."""
    small = problem.n_params <= LOW_RANK_ABOVE                      # above: eigenpairs from HVPs instead
    dense = [what for what, asked in ((f"method {config.method}", METHODS[config.method].derivatives == "hessian"),
                                      ("hessian_at_start", config.hessian_at_start and small),
                                      ("hessian_at_end", config.hessian_at_end and small),
                                      ("laplace_samples", bool(config.laplace_samples) and
                                       config.laplace_rank is None and small)) if asked]
    if dense:
        check_dense_hessian(problem.n_params, " and ".join(dense))
    if config.stop:
        DiscrepancyStop(problem, config.stop["discrepancy"])        # the data must say their noise level
    if config.laplace_samples and problem.regularization == 0.0:
        raise ConfigError(f"laplace_samples: {config.laplace_samples} needs a prior, but {problem.name} has "
                          "regularization 0 (the misfit Hessian of a network with more parameters than data is "
                          "singular: no posterior); give it a prior (regularization > 0: problem_options.regularization of "
                          "the config-built problems) or set laplace_samples: 0")


class _Clock:
    """Wall time of consecutive phases: ``lap(name)`` records the seconds since the last lap."""

    def __init__(self):
        self.laps, self._last = {}, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self._last = round(now - self._last, 4), now


class _Progress:
    """One tqdm line per seed on stderr: the phase (setup, start Hessian, training with its
    iteration count, loss, |g| and ETA, end Hessian, Laplace, files), redrawn at least once a
    second by a background thread, so that a long Hessian or Laplace phase shows its elapsed
    time instead of a frozen line. Also the minimize callback (it never stops the run)."""

    def __init__(self, config: ExperimentConfig, seed: int):
        self.config, self.seed, self.bar = config, seed, None
        self._last = time.perf_counter()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def _open(self) -> None:
        """The bar, shown from the first phase after the problem is built (a config error prints alone)."""
        from tqdm import tqdm

        from invfem.optim.options import parse_options
        options = parse_options(self.config.method, METHODS[self.config.method].options, self.config.options)
        self.bar = tqdm(total=getattr(options, "maxiter", None), desc=f"seed {self.seed}", unit="it", leave=False,
                        mininterval=0.2)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def phase(self, name: str) -> None:
        """Show that ``name`` is running now."""
        if self.bar is None:
            self._open()
        self.bar.set_description_str(f"seed {self.seed}: {name}", refresh=True)

    def __call__(self, state) -> bool:
        self.bar.n = state["iter"]
        self.bar.set_postfix(loss=f"{state['f']:.3e}", g=f"{state['gnorm']:.2e}", refresh=False)
        now = time.perf_counter()
        if now - self._last >= 0.5:
            self.bar.refresh()
            self._last = now
        return False

    def close(self) -> None:
        if self.bar is not None:
            self._stop.set()
            self._ticker.join()
            self.bar.close()


class _Quiet:
    """The progress interface with nothing shown (``--quiet``)."""

    def phase(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass


def _after_training(problem: Problem, theta: torch.Tensor, exact_hessian, config: ExperimentConfig, seed: int,
                    out: Path, log, failures: dict, phase=lambda name: None) -> dict:
    """The exact Hessian's spectrum at the result, the error of kappa, Laplace bands, and the files.
    Each phase that fails is named in ``failures`` (phase -> error) and the others still run."""
    record = {}
    attempt = lambda name, work: attempt_or_record(failures, name, work)

    h = low = None
    big = problem.n_params > LOW_RANK_ABOVE                      # no P x P matrix: dominant eigenpairs from HVPs
    if (big and (config.hessian_at_end or config.laplace_samples)) or \
            (config.laplace_samples and config.laplace_rank is not None):
        low = attempt("Hessian at the result", lambda: _dominant_pairs(problem, theta, config, seed, phase, "end"))
    if not big and (config.hessian_at_end or (config.laplace_samples and config.laplace_rank is None)):
        phase(f"end Hessian ({problem.n_params} x {problem.n_params}{_hessian_eta(problem, exact_hessian)})")
        h = attempt("Hessian at the result", lambda: exact_hessian.function(theta))
    if config.hessian_at_end and h is not None:
        summary = attempt("Hessian at the result", lambda: hessian_summary(h))
        if summary is not None:
            record["hessian_end"] = summary
            log(f"[seed {seed}] Hessian at the result: lambda in [{summary['lambda_min']:.3e}, "
                f"{summary['lambda_max']:.3e}], {sign_counts(summary)}")
    elif config.hessian_at_end and low is not None:
        record["hessian_end"] = low_rank_summary(low, problem.regularization)
        log(f"[seed {seed}] Hessian at the result: {low_rank_words(record['hessian_end'])}")
    if (h is not None or (low is not None and config.hessian_at_end)) and problem.info.get("space") is not None:
        phase("identifiability")
        found = attempt("identifiability", lambda: identifiability(problem, theta, hessian=h, low_rank=low if h is None
                                                                   else None))
        if found is not None:
            record["identifiability"] = found
            log(f"[seed {seed}] identifiability: {found['summary']}")
            for warning in found["warnings"]:
                log(f"[seed {seed}] warning: {warning}")
    error = attempt("kappa error", lambda: kappa_error(problem, theta))
    if error is not None:
        record["kappa_error"] = error
        log(f"[seed {seed}] relative L2 error of kappa: {error:.3e}")
    misfits = attempt("experiments' misfits", lambda: experiment_misfits(problem, theta))
    if misfits:
        record["experiments"] = misfits
        for row in misfits:
            noise = f" (noise level {row['misfit_expected']:.4g})" if "misfit_expected" in row else ""
            log(f"[seed {seed}] experiment {row['name']} (weight {row['weight']:g}): misfit {row['misfit']:.4e}{noise}")
    posterior = None
    if config.laplace_samples and (h is not None or low is not None):
        rank = f", rank {low.eigenvalues.numel()} from HVPs" if low is not None else ""
        phase(f"Laplace ({config.laplace_samples} samples{rank})")

        def posterior_or_warning():
            try:
                return laplace(problem, theta, n_samples=config.laplace_samples, seed=seed, hessian=h, low_rank=low)
            except NotAMinimumError as exc:   # a saddle or an unfinished run: no bands, said plainly
                record["laplace"] = {"skipped": str(exc)}
                log(f"[seed {seed}] warning: no Laplace bands: {exc}")
                return None
        posterior = attempt("Laplace", posterior_or_warning)
    if posterior is not None:
        true = None
        if problem.kappa_true is not None:
            inputs = posterior.points[:, None] if posterior.points.ndim == 1 else posterior.points
            true = problem.kappa_true(inputs)
        summary = record["laplace"] = posterior.summary(true)
        clipped = (f"; {posterior.n_clipped} negative eigenvalue(s) of the misfit Hessian clipped "
                   f"(most negative {posterior.most_negative:.2e})" if posterior.n_clipped else "")
        covered = lambda kind: f", contains the true kappa at {100 * summary['coverage'][kind]:.0f}% of the dofs" \
            if true is not None else ""
        log(f"[seed {seed}] Laplace (alpha = {posterior.alpha:g}{clipped}; {posterior.effective_dimension:.1f} of "
            f"{problem.n_params} directions informed by the data): mean width of the 95% band of kappa "
            f"{summary['band_width_linearized_mean']:.3e} linearized{covered('linearized')}; "
            f"{summary['band_width_mean']:.3e} from {config.laplace_samples} samples{covered('samples')}")
    phase("files")
    files = write_outputs(problem, theta, out, seed, posterior, failures=failures)
    record["files"] = [p.name for p in files]
    return record


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
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.14, top=0.91)   # fixed: no extra draw to measure
    save_figure(fig, path, dpi=120)

"""``regularization: auto``: the prior weight alpha chosen by the discrepancy principle or the L-curve.

The loss ``misfit(theta) + alpha ||theta||^2`` needs an alpha; too large a prior biases kappa,
too small a one fits the noise. With ``problem_options.regularization: auto`` (or
``{auto: {rule, alphas, tau, maxiter}}``) ``invfem run`` and ``invfem compare`` fit the
problem for each alpha of a grid, from the largest down (each fit warm-started from the
previous one's result: a continuation), and pick

- ``discrepancy`` (Morozov): the largest alpha whose fit has a misfit at most ``tau^2 N / 2``,
  the expected misfit of the true law under Gaussian noise of known sigma (``stop:
  discrepancy`` uses the same level). Where no alpha of the grid gets there, the smallest
  one, and a warning;
- ``l-curve`` (Hansen): the corner of the curve ``(log misfit, log ||theta||^2)``, the point of
  largest curvature (Menger curvature of three consecutive points), where more fit starts to
  cost much more norm;
- ``auto`` (the default): ``discrepancy`` where the data say their sigma
  (``info["misfit_expected"]``), ``l-curve`` otherwise.

The run then trains at the chosen alpha from theta0 as usual (so its iterations and wall time
compare with any other run); the selection's fits, their misfits, norms, iterations and
seconds are in the record (``regularization``) and drawn in ``regularization_seed<k>.png``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from invfem.errors import ConfigError
from invfem.files import save_figure

#: the default grid of alpha values, tried from the largest down
DEFAULT_ALPHAS = tuple(10.0 ** k for k in range(1, -7, -1))

RULES = ("auto", "discrepancy", "l-curve")


@dataclass(frozen=True)
class AutoRegularization:
    """How alpha is chosen: ``rule`` (see the module docstring), the grid ``alphas``, ``tau`` of
    the discrepancy level, and ``maxiter`` per fit (default: the method's own)."""

    rule: str = "auto"
    alphas: tuple = DEFAULT_ALPHAS
    tau: float = 1.0
    maxiter: int | None = None

    def __post_init__(self):
        where = "problem_options.regularization.auto"
        if self.rule not in RULES:
            raise ConfigError(f"{where}.rule must be one of {list(RULES)}, got {self.rule!r}")
        alphas = self.alphas
        if not isinstance(alphas, (list, tuple)) or len(alphas) < (3 if self.rule == "l-curve" else 1):
            raise ConfigError(f"{where}.alphas must be a list of at least {3 if self.rule == 'l-curve' else 1} "
                              f"numbers > 0 (the L-curve needs 3), got {alphas!r}")
        for a in alphas:
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
                raise ConfigError(f"{where}.alphas: every alpha must be a number > 0, got {a!r}")
        if len(set(alphas)) != len(alphas):
            raise ConfigError(f"{where}.alphas: an alpha is listed twice in {list(alphas)}")
        object.__setattr__(self, "alphas", tuple(sorted((float(a) for a in alphas), reverse=True)))
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not self.tau > 0:
            raise ConfigError(f"{where}.tau must be a number > 0, got {self.tau!r}")
        if self.maxiter is not None and (isinstance(self.maxiter, bool) or not isinstance(self.maxiter, int)
                                         or self.maxiter < 1):
            raise ConfigError(f"{where}.maxiter must be an integer >= 1, got {self.maxiter!r}")


def auto_spec(problem_options: dict) -> AutoRegularization | None:
    """The :class:`AutoRegularization` of ``problem_options["regularization"]`` when it is ``auto``
    or ``{auto: {...}}``; None for a number (or no regularization); ConfigError otherwise."""
    value = problem_options.get("regularization") if isinstance(problem_options, dict) else None
    if value == "auto":
        return AutoRegularization()
    if isinstance(value, dict):
        if set(value) != {"auto"} or not isinstance(value["auto"], (dict, type(None))):
            raise ConfigError(f"problem_options.regularization must be a number, 'auto' or {{auto: {{rule, alphas, "
                              f"tau, maxiter}}}}, got {value!r}")
        options = value["auto"] or {}
        valid = ["rule", "alphas", "tau", "maxiter"]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"problem_options.regularization.auto: unknown option(s) {unknown}; valid: {valid}")
        return AutoRegularization(**options)
    if isinstance(value, str):
        raise ConfigError(f"problem_options.regularization must be a number or 'auto', got {value!r}")
    return None


def options_to_check(problem_options: dict) -> dict:
    """The options as the problem checks them: ``regularization: auto`` validated here (a
    ConfigError naming the key) and replaced by a number, any other value unchanged."""
    return with_alpha(problem_options, 0.0) if auto_spec(problem_options) is not None else problem_options


def with_alpha(problem_options: dict, alpha: float) -> dict:
    """The options with ``regularization`` set to ``alpha``."""
    return {**problem_options, "regularization": float(alpha)}


def resolve_rule(spec: AutoRegularization, problem) -> tuple[str, float | None]:
    """The rule applied to ``problem`` (``auto``: discrepancy where its data say their sigma, else
    the L-curve) and the discrepancy level ``tau^2 N / 2`` (None for the L-curve); ConfigError
    where the rule cannot apply (discrepancy without sigma, an L-curve of fewer than 3 alphas)."""
    expected = problem.info.get("misfit_expected")
    rule = spec.rule
    if rule == "auto":
        rule = "discrepancy" if expected is not None else "l-curve"
    if rule == "l-curve":
        if len(spec.alphas) < 3:
            raise ConfigError("problem_options.regularization: the L-curve (the rule without a known sigma) needs at "
                              f"least 3 alphas, got {list(spec.alphas)}")
        return rule, None
    if expected is None:
        raise ConfigError(f"problem_options.regularization: the discrepancy rule needs the noise level of "
                          f"{problem.name}'s data: give sigma (a sigma column, observations.sigma, or synthetic "
                          "noise_kind: gaussian), or use rule: l-curve")
    return rule, spec.tau ** 2 * float(expected)


def choose_regularization(build, fit, spec: AutoRegularization, log=lambda line: None,
                          phase=lambda name: None, error=None) -> dict:
    """Fit ``build(alpha)`` (a Problem) for each alpha of ``spec`` by ``fit(problem, x0)`` (an
    optimizer result; ``x0`` the previous fit's result, theta0 for the first) and choose alpha.

    Returns the record: ``rule`` (the one applied), ``chosen``, ``reason``, ``tau`` and ``level``
    (discrepancy), and per alpha ``alphas``, ``misfit`` (the loss less ``alpha ||theta||^2``),
    ``norm2`` (``||theta||^2``), ``nit``, ``seconds`` and, with ``error(problem, theta)`` (e.g.
    kappa's error against a known law: never used to choose), ``error``; ``warning`` where no
    alpha reached the level."""
    rule, level, x0 = spec.rule, None, None
    rows = {"alphas": [], "misfit": [], "norm2": [], "nit": [], "seconds": []}
    errors = []
    chosen, reason, warning = None, None, None
    for k, alpha in enumerate(spec.alphas):
        problem = build(alpha)
        if k == 0:
            rule, level = resolve_rule(spec, problem)
        phase(f"choosing alpha: {alpha:g} ({k + 1} of {len(spec.alphas)})")
        start = time.perf_counter()
        result = fit(problem, problem.theta0 if x0 is None else x0)
        seconds = time.perf_counter() - start
        x0 = result.x.detach()
        norm2 = float((x0 * x0).sum())
        misfit = float(result.fun) - alpha * norm2
        for key, value in zip(rows, (alpha, misfit, norm2, int(result.nit), round(seconds, 4))):
            rows[key].append(value)
        if error is not None:
            errors.append(error(problem, x0))
        log(f"alpha = {alpha:g}: misfit {misfit:.4e}" + (f" (level {level:.4g})" if level is not None else "") +
            f", |theta|^2 = {norm2:.4e}, {int(result.nit)} iterations, {seconds:.1f} s" +
            (f", kappa error {errors[-1]:.3e}" if errors and errors[-1] is not None else ""))
        if rule == "discrepancy" and misfit <= level:
            chosen = alpha
            reason = (f"the largest alpha of the grid whose misfit {misfit:.4g} is at most tau^2 N/2 = {level:.4g} "
                      f"(discrepancy principle, tau = {spec.tau:g})")
            break
    if rule == "discrepancy" and chosen is None:
        chosen = spec.alphas[-1]
        warning = (f"no alpha of the grid {list(spec.alphas)} brings the misfit down to tau^2 N/2 = {level:.4g} "
                   f"(smallest misfit {min(rows['misfit']):.4g}): the smallest alpha is used; the data misfit has "
                   "another part than the noise (model or discretization error), or sigma is too small")
        reason = "the smallest alpha of the grid (no alpha reached the discrepancy level)"
    if rule == "l-curve":
        curvature = l_curve_curvature(rows["misfit"], rows["norm2"])
        rows["curvature"] = [None if c is None else float(c) for c in curvature]
        inner = [(c, i) for i, c in enumerate(curvature) if c is not None]
        best = max(inner)[1]
        chosen = rows["alphas"][best]
        reason = (f"the corner of the L-curve (log misfit, log |theta|^2): largest curvature {curvature[best]:.3g} "
                  f"of the {len(inner)} inner points")
    out = {"rule": rule, "chosen": chosen, "reason": reason, "tau": spec.tau, "level": level, **rows,
           "seconds_total": round(sum(rows["seconds"]), 4)}
    if errors:
        out["error"] = errors
    if warning:
        out["warning"] = warning
    return out


def l_curve_curvature(misfit, norm2) -> list:
    """Signed Menger curvature of the L-curve ``(log10 misfit, log10 norm2)`` at each inner point
    (None at the two ends), positive where the curve turns as at the corner of an L (points
    ordered from the largest alpha: misfit falling, norm rising)."""
    x = np.log10(np.maximum(np.asarray(misfit, dtype=float), 1e-300))
    y = np.log10(np.maximum(np.asarray(norm2, dtype=float), 1e-300))
    out = [None] * len(x)
    for i in range(1, len(x) - 1):
        a = np.array([x[i] - x[i - 1], y[i] - y[i - 1]])
        b = np.array([x[i + 1] - x[i], y[i + 1] - y[i]])
        c = np.array([x[i + 1] - x[i - 1], y[i + 1] - y[i - 1]])
        lengths = np.linalg.norm(a) * np.linalg.norm(b) * np.linalg.norm(c)
        cross = a[0] * b[1] - a[1] * b[0]
        out[i] = float(-2.0 * cross / lengths) if lengths > 0 else 0.0
    return out


def plot_regularization(path: Path, record: dict, title: str = "") -> Path:
    """The L-curve (log misfit against log |theta|^2, each point labelled with its alpha) and the
    misfit against alpha with the discrepancy level, the chosen alpha marked; the rule in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    alphas, misfit, norm2 = (np.asarray(record[k], dtype=float) for k in ("alphas", "misfit", "norm2"))
    pick = int(np.flatnonzero(alphas == record["chosen"])[0]) if record["chosen"] in record["alphas"] else None
    left = fig.add_subplot(1, 2, 1)
    left.loglog(misfit, norm2, "o-", markersize=4)
    for a, m, n in zip(alphas, misfit, norm2):
        left.annotate(f"{a:g}", (m, n), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if pick is not None:
        left.loglog([misfit[pick]], [norm2[pick]], "r*", markersize=12, label=f"chosen alpha = {alphas[pick]:g}")
        left.legend(fontsize=8)
    left.set_xlabel("misfit (loss - alpha |theta|^2)")
    left.set_ylabel("|theta|^2")
    left.set_title("L-curve", fontsize=9)
    right = fig.add_subplot(1, 2, 2)
    right.loglog(alphas, misfit, "o-", markersize=4, label="misfit of the fit")
    if record.get("level") is not None:
        right.axhline(record["level"], color="k", linestyle="--", linewidth=1,
                      label=f"tau^2 N/2 = {record['level']:.4g}")
    if pick is not None:
        right.loglog([alphas[pick]], [misfit[pick]], "r*", markersize=12)
    right.set_xlabel("alpha")
    right.set_ylabel("misfit")
    right.legend(fontsize=8, loc="upper left")
    errors = record.get("error")
    if errors and all(e is not None for e in errors):
        twin = right.twinx()
        twin.loglog(alphas[:len(errors)], errors, "s:", color="tab:green", markersize=4,
                    label="kappa error (known law; not used to choose)")
        twin.set_ylabel("relative L2 error of kappa", fontsize=8)
        twin.legend(fontsize=8, loc="lower right")
    right.set_title("misfit against alpha", fontsize=9)
    fig.suptitle(f"{title}{': ' if title else ''}alpha = {record['chosen']:g} by the {record['rule']} rule", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.86, wspace=0.3)
    return save_figure(fig, path, dpi=110)

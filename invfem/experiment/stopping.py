"""Noise-aware stopping: the discrepancy principle (Morozov) as a stop for every method.

With Gaussian noise of known sigma the data misfit ``(1/2) sum ((B u - d) / sigma)^2`` of the
true law has the expected value ``N / 2`` (N observations). Fitting below that level fits the
noise: the discrepancy principle stops at the first iterate whose misfit is at most
``tau^2 N / 2`` (``tau`` >= 1 leaves a margin; 1 by default). The misfit is the loss less the
prior term ``alpha ||theta||^2``.

Config: ``stop: discrepancy`` or ``stop: {discrepancy: 1.1}`` (``invfem run`` and ``invfem compare``).
The problem must say its expected misfit (``info["misfit_expected"]``, set by the generic
builders when sigma is known: an observation file's ``sigma`` column, ``observations.sigma``,
or synthetic ``noise_kind: gaussian``).
"""

from __future__ import annotations

import math

import torch

from invfem.errors import ConfigError


def check_stop(stop) -> dict | None:
    """The ``stop`` config value as ``{"discrepancy": tau}`` (or None); ConfigError otherwise."""
    if stop is None:
        return None
    if stop == "discrepancy":
        return {"discrepancy": 1.0}
    if isinstance(stop, dict) and set(stop) == {"discrepancy"}:
        tau = stop["discrepancy"]
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
            raise ConfigError(f"stop.discrepancy (tau) must be a number > 0, got {tau!r}")
        return {"discrepancy": float(tau)}
    raise ConfigError(f"stop must be 'discrepancy' or {{discrepancy: tau}}, got {stop!r}")


class DiscrepancyStop:
    """A minimize callback that stops at the first iterate with misfit <= ``tau^2 N / 2``.

    ``level``, ``tau``; after the run ``reached`` (bool), ``iteration`` and ``misfit`` (at the stop)
    and :meth:`summary` / :attr:`message` for the record."""

    def __init__(self, problem, tau: float = 1.0):
        expected = problem.info.get("misfit_expected")
        if expected is None:
            raise ConfigError(f"stop: discrepancy needs the noise level of {problem.name}'s data: give sigma (a "
                              "sigma column in the observation file, observations.sigma, or synthetic noise_kind: "
                              "gaussian); without it the misfit has no expected value")
        self.tau, self.level = float(tau), float(tau) ** 2 * float(expected)
        self.alpha = problem.regularization
        self.reached, self.iteration, self.misfit = False, None, None

    def misfit_of(self, f: float, x: torch.Tensor) -> float:
        """The data misfit: the loss less ``alpha ||x||^2``."""
        return float(f) - (self.alpha * float((x * x).sum()) if self.alpha else 0.0)

    def __call__(self, state) -> bool:
        misfit = self.misfit_of(state["f"], state["x"])
        if misfit <= self.level:
            self.reached, self.iteration, self.misfit = True, int(state["iter"]), misfit
            return True
        return False

    @property
    def message(self) -> str:
        return (f"discrepancy level reached: misfit {self.misfit:.4g} <= tau^2 N/2 = {self.level:.4g} "
                f"(tau = {self.tau:g}) at iteration {self.iteration}")

    def summary(self) -> dict:
        return {"tau": self.tau, "level": self.level, "reached": self.reached, "iteration": self.iteration,
                "misfit": self.misfit}


def chain(*callbacks):
    """One callback calling each of ``callbacks`` (None skipped); stops when any asks to."""
    active = [c for c in callbacks if c is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda state: any([c(state) for c in active])

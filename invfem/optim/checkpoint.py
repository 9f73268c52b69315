"""Checkpoints of a running optimizer, and resuming from one.

``minimize(..., checkpoint=Checkpoint(save, every=50, seconds=60))`` hands ``save`` the
run's state every ``every`` iterations and/or ``seconds`` seconds; ``minimize(...,
resume=state)`` continues from it. The state is a dict of numbers, lists, numpy arrays and
tensors (``torch.save``-able) with what every runner shares — iteration, x, f, g, history,
evaluation counters, elapsed time — and what each keeps: the trust radius and the
subproblem's warm start (trust-region and Newton methods), Adam's moments, invfem BFGS's
inverse Hessian. Those resume exactly: the iterates after a resume are the ones the
uninterrupted run would have produced. scipy's methods resume from their last x with a
fresh memory (``state["exact"]`` is False).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from invfem.errors import ConfigError


@dataclass
class Checkpoint:
    """Call ``save(state)`` every ``every`` iterations and/or every ``seconds`` seconds (either may be None)."""

    save: Callable[[dict], None]
    every: int | None = None
    seconds: float | None = None
    _last: float = field(default_factory=time.perf_counter, init=False, repr=False)

    def __post_init__(self):
        if self.every is not None and (not isinstance(self.every, int) or self.every < 1):
            raise ConfigError(f"checkpoint every must be a positive integer, got {self.every!r}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"checkpoint seconds must be > 0, got {self.seconds!r}")

    def maybe(self, k: int, state: Callable[[], dict]) -> None:
        """Save the state after iteration ``k`` (built only when due)."""
        if k == 0:
            return
        now = time.perf_counter()
        if (self.every is not None and k % self.every == 0) or \
                (self.seconds is not None and now - self._last >= self.seconds):
            self.save(state())
            self._last = time.perf_counter()


def common_state(runner: str, k: int, x, f: float, g, history: list, oracle, start: float, exact: bool = True,
                 **extra) -> dict:
    """The part of a state every runner has."""
    return {"runner": runner, "exact": exact, "iteration": int(k), "x": np.array(x, dtype=np.float64),
            "f": float(f), "g": np.array(g, dtype=np.float64), "history": [dict(h) for h in history],
            "counters": [oracle.nfev, oracle.njev, oracle.nhev, oracle.ninvalid],
            "elapsed": time.perf_counter() - start - oracle.paused, **extra}


def restore_common(oracle, state: dict, runner: str):
    """(start, history, k, x, f, g) from a state of ``runner``; the oracle's counters continue."""
    if state.get("runner") != runner:
        raise ConfigError(f"cannot resume a {state.get('runner')!r} state with the {runner!r} runner")
    oracle.nfev, oracle.njev, oracle.nhev, oracle.ninvalid = (int(c) for c in state["counters"])
    start = time.perf_counter() - float(state["elapsed"])
    return (start, [dict(h) for h in state["history"]], int(state["iteration"]),
            _array(state["x"]), float(state["f"]), _array(state["g"]))


def _array(value) -> np.ndarray:
    """A float64 copy of a saved vector (a tensor once the state went through ``torch.save``)."""
    value = value.numpy() if hasattr(value, "numpy") else value
    return np.array(value, dtype=np.float64)


def replayed(oracle, state: dict, rebuild):
    """``rebuild()`` (e.g. the Hessian at the resumed point, which the state does not hold), with
    the oracle's counters left at the state's: the uninterrupted run did that work once, before the
    checkpoint, and a resumed run's nfev/njev/nhev must match it."""
    try:
        return rebuild()
    finally:
        oracle.nfev, oracle.njev, oracle.nhev, oracle.ninvalid = (int(c) for c in state["counters"])


def untimed(fn, oracle):
    """``fn`` with its time left out of the run's clock (``oracle.paused``): a callback's
    diagnostics or a checkpoint's write are not the method's cost."""
    def wrapped(*args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            oracle.paused += time.perf_counter() - t0
    return wrapped


def run_hooks(callback, checkpoint, oracle, method: str):
    """``(callback, checkpoint)`` of a run, untimed, every saved state naming its ``method``."""
    if checkpoint is not None:
        checkpoint = Checkpoint(untimed(lambda state, save=checkpoint.save: save({**state, "method": method}), oracle),
                                checkpoint.every, checkpoint.seconds)
    if callback is not None:
        callback = untimed(callback, oracle)
    return callback, checkpoint

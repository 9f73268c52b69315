"""Experiment configuration: a YAML file read into a frozen, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from invfem.errors import ConfigError


@dataclass(frozen=True)
class ExperimentConfig:
    """One study: a problem, a training method, the seeds, and where results go.

    YAML keys are the field names; unknown keys are an error. ``output`` is relative to
    the current directory. ``device`` (``cpu``, ``cuda``, ``cuda:1``, ...) is where the
    problem's tensors live: with ``cuda`` the network, its Hessian, the dense algebra and the
    trust-region subproblem run on the GPU (sparse factorizations as the solver backend decides).
    """

    problem: str
    problem_options: dict = field(default_factory=dict)
    method: str = "trust-exact"
    options: dict | str = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    hessian_at_start: bool = True
    hessian_chunk: int | None = None
    device: str | None = None
    output: str = "results"

    def __post_init__(self):
        if not isinstance(self.problem, str) or not self.problem:
            raise ConfigError(f"problem must be a problem name, got {self.problem!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed")
        for name in ("problem_options", "options"):
            if not isinstance(getattr(self, name), (dict, str)) or name == "problem_options" and \
                    not isinstance(self.problem_options, dict):
                raise ConfigError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        from invfem.optim.api import METHODS
        from invfem.optim.options import parse_options
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; valid: {sorted(METHODS)}")
        parse_options(self.method, METHODS[self.method].options, self.options)  # fail before any work
        if self.device is not None:
            check_device(self.device)


def check_device(device):
    """``torch.device(device)``, or ConfigError naming it when it is malformed or not available here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device (cpu, cuda, cuda:0, ...): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def load_config(path: str | Path, **overrides) -> ExperimentConfig:
    """Read a YAML config; keyword ``overrides`` replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    valid = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    if "problem" not in data:
        raise ConfigError(f"{path}: missing required key 'problem'")
    return ExperimentConfig(**data)

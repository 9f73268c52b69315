"""Experiment configuration: a YAML file read into a frozen, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from invfem.errors import ConfigError


def check_problem(problem) -> None:
    """A problem is a shipped problem's name or the path of a .py file: a non-empty string."""
    if not isinstance(problem, str) or not problem:
        raise ConfigError(f"problem must be a problem name or a .py path, got {problem!r}")


#: seeds go to torch.manual_seed, which takes 64-bit integers
MAX_SEED = 2 ** 63


def check_seeds(seeds) -> tuple[int, ...]:
    """The seeds as a tuple of ints: a non-empty list of distinct integers >= 0, or a one-line error."""
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(_is_int(s) and 0 <= s < MAX_SEED for s in seeds):
        shown = repr(seeds) if len(repr(seeds)) < 80 else repr(seeds)[:77] + "..."
        raise ConfigError(f"seeds must be a list of integers in [0, 2**63), e.g. [0] or [0, 1, 2]; got {shown}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must not repeat, got {list(seeds)}")
    return tuple(int(s) for s in seeds)


@dataclass(frozen=True)
class ExperimentConfig:
    """One study: a problem, a training method, the seeds, and where results go.

    YAML keys are the field names; unknown keys are an error. ``output`` is relative to
    the current directory; the input files a config names (``problem: my_problem.py``,
    ``problem_options.mesh``, ``problem_options.observations``) are looked up next to the
    config file first, then in the current directory. ``device`` (``cpu``, ``cuda``, ``cuda:1``, ...) is where the
    problem's tensors live: with ``cuda`` the network, its Hessian, the dense algebra and the
    trust-region subproblem run on the GPU (sparse factorizations as the solver backend decides).

    After training, ``hessian_at_end`` records the spectrum of the exact Hessian at the
    result (sign counts as at theta0), and ``laplace_samples > 0`` draws that many samples
    of the Laplace posterior (:func:`invfem.diagnostics.laplace`) for kappa's mean and 95%
    bands; with ``laplace_rank: r`` the posterior comes from the r dominant eigenpairs of the
    misfit Hessian by Hessian-vector products (no P x P matrix: the size for 10^4 parameters),
    the prior beyond them. ``problem_options`` are checked against the problem before any work. ``stop:
    discrepancy`` (or ``{discrepancy: tau}``) ends the training at the discrepancy level of the
    data (:mod:`invfem.experiment.stopping`).
    """

    problem: str
    problem_options: dict = field(default_factory=dict)
    method: str = "trust-exact"
    options: dict | str = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    hessian_at_start: bool = True
    hessian_at_end: bool = True
    laplace_samples: int = 0
    laplace_rank: int | None = None
    hessian_chunk: int | None = None
    device: str | None = None
    stop: object = None
    output: str = "results"

    def __post_init__(self):
        check_problem(self.problem)
        from invfem.experiment.stopping import check_stop
        object.__setattr__(self, "stop", check_stop(self.stop))
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        for name in ("hessian_at_start", "hessian_at_end"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not _is_int(self.laplace_samples) or self.laplace_samples < 0:
            raise ConfigError(f"laplace_samples must be an integer >= 0 (0: no Laplace bands), got {self.laplace_samples!r}")
        if self.laplace_rank is not None and (not _is_int(self.laplace_rank) or self.laplace_rank < 1):
            raise ConfigError(f"laplace_rank must be a positive integer or null (null: the dense Hessian), got "
                              f"{self.laplace_rank!r}")
        if self.hessian_chunk is not None and (not _is_int(self.hessian_chunk) or self.hessian_chunk < 1):
            raise ConfigError(f"hessian_chunk must be a positive integer or null, got {self.hessian_chunk!r}")
        if not isinstance(self.output, str) or not self.output:
            raise ConfigError(f"output must be a folder path, got {self.output!r}")
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
        from invfem.experiment.regularization import options_to_check
        from invfem.experiment.run import check_problem_options
        check_problem_options(self.problem, options_to_check(self.problem_options))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_device(device):
    """``torch.device(device)``, or ConfigError naming it when it is malformed or not available here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device (cpu, cuda, cuda:0, ...): {exc}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r}: invfem runs on cpu or cuda (cuda:0, cuda:1, ...)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def _beside(value, base: Path):
    """``base / value`` when ``value`` is a relative path that exists there, else ``value`` unchanged."""
    if isinstance(value, str) and value and not Path(value).is_absolute() and (base / value).is_file():
        return str(base / value)
    return value


def _resolve_inputs(data: dict, base: Path) -> None:
    """Input files named relative to the config file's folder (see :class:`ExperimentConfig`)."""
    if isinstance(data.get("problem"), str) and data["problem"].endswith(".py"):
        data["problem"] = _beside(data["problem"], base)
    options = data.get("problem_options")
    if not isinstance(options, dict):
        return
    if isinstance(options.get("mesh"), str):
        options["mesh"] = _beside(options["mesh"], base)
    holders = [options] + [e for e in options.get("experiments") or () if isinstance(e, dict)] \
        if isinstance(options.get("experiments", []), list) else [options]
    for holder in holders:                      # the observations of the problem, or of each experiment
        observations = holder.get("observations")
        if isinstance(observations, str):
            holder["observations"] = _beside(observations, base)
        elif isinstance(observations, dict) and isinstance(observations.get("file"), str):
            holder["observations"] = {**observations, "file": _beside(observations["file"], base)}


#: the most nodes a config may have once its aliases are expanded (a "billion laughs" file of a
#: few hundred bytes expands to 9^9 nodes; real configs have a few hundred)
MAX_EXPANDED_NODES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (PyYAML keeps the last one silently) and
    documents whose aliases expand beyond :data:`MAX_EXPANDED_NODES` nodes."""

    def construct_document(self, node):
        sizes: dict[int, int] = {}

        def size(n) -> int:                  # nodes once expanded; an alias reuses its anchor's node
            if id(n) not in sizes:
                sizes[id(n)] = 0             # a recursive alias counts once (safe_load builds it as a cycle)
                children = (n.value if isinstance(n, yaml.SequenceNode) else
                            [c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else [])
                sizes[id(n)] = min(1 + sum(size(c) for c in children), MAX_EXPANDED_NODES + 1)
            return sizes[id(n)]

        if size(node) > MAX_EXPANDED_NODES:
            raise ConfigError(f"aliases expand to more than {MAX_EXPANDED_NODES} values (line "
                              f"{node.start_mark.line + 1}): refused (an alias bomb?)")
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue                     # unhashable: PyYAML's own error follows
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1}; first at line "
                                  f"{seen[key] + 1}): each key once")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _text(path: Path) -> str:
    """A config's text: UTF-8 (a byte-order mark allowed), or UTF-16 with its byte-order mark, as
    YAML allows; other bytes (Latin-1, a binary file) are a ConfigError naming the line."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not {encoding.replace('-sig', '').upper()} text (byte {data[exc.start]:#04x} "
                          f"on line {line}); save the config as UTF-8") from None


def _options_for(method: str, options, log) -> dict:
    """The entries of ``options`` that ``method`` takes (a preset string is dropped whole)."""
    from invfem.optim.api import METHODS
    if method not in METHODS:
        raise ConfigError(f"--method: unknown method {method!r}; valid: {sorted(METHODS)}")
    if not isinstance(options, dict):
        dropped, kept = [options], {}
    else:
        valid = {f.name for f in fields(METHODS[method].options)}
        kept = {k: v for k, v in options.items() if k in valid}
        dropped = sorted(set(options) - set(kept))
    if dropped and log is not None:
        log(f"--method {method}: the config's options {dropped} do not apply to it and are dropped")
    return kept


def read_yaml(path: Path) -> dict:
    """A YAML file's top-level mapping; one-line ConfigErrors for a missing file, broken YAML
    (with line and column), a duplicate key or an alias bomb (with the line), or another top level."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(_text(path), Loader=_StrictLoader) or {}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, maxiter: int | None = None, log=None, **overrides) -> ExperimentConfig:
    """Read a YAML config; keyword ``overrides`` replace top-level keys (``output``, ``seeds``,
    ``method``, ...); ``maxiter`` replaces the options' budget. A ``method`` override keeps the
    config's options that the new method takes and drops (and names, through ``log``) the others."""
    path = Path(path)
    data = read_yaml(path)
    if overrides.get("method") is not None and overrides["method"] != data.get("method", "trust-exact"):
        data["options"] = _options_for(overrides["method"], data.get("options", {}), log)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if maxiter is not None:
        if not _is_int(maxiter) or maxiter < 1:
            raise ConfigError(f"--maxiter must be an integer >= 1, got {maxiter!r}")
        if not isinstance(data.get("options", {}), dict):
            raise ConfigError(f"--maxiter needs options as a mapping, not the preset {data['options']!r}")
        data["options"] = {**data.get("options", {}), "maxiter": int(maxiter)}
    _resolve_inputs(data, path.parent)
    valid = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    if "problem" not in data:
        raise ConfigError(f"{path}: missing required key 'problem'")
    return ExperimentConfig(**data)

"""Study configuration for ``invfem compare``: one problem, several methods, several seeds.

    problem: poisson_fem
    problem_options: {n: 10}
    seeds: [0, 1, 2, 3, 4]
    maxiter: 5000                       # default budget of every method (its options may override)
    time_limit: null                    # default wall-time limit per run, seconds
    methods:
      - trust-exact                                   # label = method, its default options
      - {method: bfgs, options: {maxiter: 5000, gtol: 0}}
      - {label: tr-r0.1, method: trust-exact, options: {initial_radius: 0.1}, time_limit: 600}
      - label: adam-then-krylov                       # a chain: each stage starts where the last ended
        stages: [{method: adam, options: {maxiter: 100, lr: 0.01}}, {method: trust-krylov, options: {maxiter: 200}}]
    output: results/study_poisson_fem

Every (method, seed) pair is one run. The whole config — the problem's options, every
method and its options, labels — is checked before any work, with one-line errors naming
the key and listing the valid ones.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from invfem.errors import ConfigError
from invfem.experiment.config import _is_int, _resolve_inputs, check_device, check_problem, check_seeds, read_yaml

#: the longest method label (it names the run folders; file systems take 255 bytes per name)
MAX_LABEL = 100


@dataclass(frozen=True)
class MethodSpec:
    """One method of a study: ``label`` (unique; the run folders are ``<label>-seed<k>``),
    ``method``, its ``options`` (``maxiter`` defaults to the study's), ``time_limit`` (s)."""

    label: str
    method: str
    options: dict
    time_limit: float | None = None
    stages: tuple | None = None     # a chain: ((method, options), ...) run one after the other ("chain" method)

    @property
    def maxiter(self) -> int:
        """The run's iteration budget (a chain's: the sum of its stages')."""
        if self.stages:
            return sum(int(options["maxiter"]) for _, options in self.stages)
        return int(self.options["maxiter"])


@dataclass(frozen=True)
class StudyConfig:
    """A study (see the module docstring). Besides problem, methods, seeds and output:

    ``maxiter``, ``time_limit``: the default budget of every run; ``checkpoint_every``
    (iterations) and ``checkpoint_seconds``: how often a run saves its state;
    ``diagnostics_every``: every so many iterations the exact Hessian's spectrum, the step
    angles, kappa's error and the saturation are recorded (0: only at the end); ``trace_every``:
    every so many iterations the problem's cheap ``info["traces"]`` (a PINN's test error,
    orthogonality and gradient split) with the loss and wall time, in the record's ``traces``
    (0: none); ``stop``:
    ``discrepancy`` or ``{discrepancy: tau}`` ends each run at the data's discrepancy level
    (:mod:`invfem.experiment.stopping`); ``stop_loss``:
    a run stops once its loss is at or below it (reference 001: 1e-6); ``eps``: the
    sign-count threshold (eps lambda_max); ``loss_threshold``: for the time-to-threshold
    column of the report; ``activation_point``: where activation histograms are taken;
    ``executor``: ``serial``, ``processes`` (joblib, ``workers``) or ``dask``
    (``scheduler``: a dask-distributed address; none: a LocalCluster with ``workers``);
    ``threads_per_run``: torch/BLAS threads of each run (default: the cores / workers);
    ``device``: where the problem lives; ``hessian_chunk`` as for ``invfem run``.
    """

    problem: str
    methods: tuple
    problem_options: dict = field(default_factory=dict)
    seeds: tuple = (0,)
    maxiter: int = 1000
    time_limit: float | None = None
    checkpoint_every: int = 50
    checkpoint_seconds: float = 60.0
    diagnostics_every: int = 100
    trace_every: int = 0
    eps: float = 1e-6
    loss_threshold: float = 1e-6
    stop_loss: float | None = None
    stop: object = None
    activation_point: tuple = (0.5, 0.5)
    executor: str = "serial"
    workers: int = 1
    scheduler: str | None = None
    threads_per_run: int | None = None
    device: str | None = None
    hessian_chunk: int | None = None
    output: str = "results/study"

    def __post_init__(self):
        from invfem.experiment.run import check_problem_options
        from invfem.optim.api import METHODS
        from invfem.optim.options import parse_options

        check_problem(self.problem)
        if not isinstance(self.problem_options, dict):
            raise ConfigError(f"problem_options must be a mapping, got {self.problem_options!r}")
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        for name, low in (("maxiter", 1), ("checkpoint_every", 1), ("diagnostics_every", 0), ("trace_every", 0),
                          ("workers", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("checkpoint_seconds", "eps", "loss_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        _time_limit("time_limit", self.time_limit)
        if self.stop_loss is not None and (isinstance(self.stop_loss, bool)
                                           or not isinstance(self.stop_loss, (int, float))
                                           or math.isnan(self.stop_loss)):
            raise ConfigError(f"stop_loss must be a number or null, got {self.stop_loss!r}")
        from invfem.experiment.stopping import check_stop
        object.__setattr__(self, "stop", check_stop(self.stop))
        if self.executor not in ("serial", "processes", "dask"):
            raise ConfigError(f"executor must be one of ['dask', 'processes', 'serial'], got {self.executor!r}")
        if self.threads_per_run is not None and (not _is_int(self.threads_per_run) or self.threads_per_run < 1):
            raise ConfigError(f"threads_per_run must be a positive integer or null, got {self.threads_per_run!r}")
        if not isinstance(self.activation_point, (list, tuple)) or len(self.activation_point) != 2:
            raise ConfigError(f"activation_point must be two coordinates, got {self.activation_point!r}")
        object.__setattr__(self, "activation_point", tuple(float(v) for v in self.activation_point))
        if not isinstance(self.output, str) or not self.output:
            raise ConfigError(f"output must be a folder path, got {self.output!r}")
        if self.device is not None:
            check_device(self.device)
        from invfem.experiment.regularization import options_to_check
        check_problem_options(self.problem, options_to_check(self.problem_options))
        specs = _method_specs(self.methods, self.maxiter, self.time_limit)
        for spec in specs:
            for method, options in spec.stages or ((spec.method, spec.options),):
                try:
                    parse_options(method, METHODS[method].options, options)
                except ConfigError as exc:
                    where = f"methods[{spec.label}]" + (f" stage {method}" if spec.stages else "")
                    raise ConfigError(f"{where}: {exc}") from None
        object.__setattr__(self, "methods", tuple(specs))

    def runs(self) -> list[tuple[MethodSpec, int]]:
        """Every (method, seed) pair, methods in config order, then seeds."""
        return [(spec, seed) for spec in self.methods for seed in self.seeds]

    def as_dict(self) -> dict:
        """Plain types (for records and workers)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["methods"] = [{"label": m.label, "method": m.method, "options": m.options, "time_limit": m.time_limit,
                           **({"stages": [{"method": k, "options": o} for k, o in m.stages]} if m.stages else {})}
                          for m in self.methods]
        out["seeds"], out["activation_point"] = list(self.seeds), list(self.activation_point)
        return out


def _time_limit(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        raise ConfigError(f"{name} must be a number of seconds > 0 or null, got {value!r}")


def _method_specs(methods, maxiter: int, time_limit) -> list[MethodSpec]:
    from invfem.optim.api import METHODS

    if not isinstance(methods, (list, tuple)) or not methods:
        raise ConfigError("methods must be a non-empty list (method names, or {method, label, options, time_limit})")
    specs, seen = [], set()
    for i, entry in enumerate(methods):
        if isinstance(entry, MethodSpec):
            specs.append(entry)
            seen.add(entry.label)
            continue
        if isinstance(entry, str):
            entry = {"method": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"methods[{i}] must be a method name or a mapping, got {entry!r}")
        unknown = sorted(set(entry) - {"method", "label", "options", "time_limit", "stages"})
        if unknown:
            raise ConfigError(f"methods[{i}]: unknown key(s) {unknown}; valid: ['label', 'method', 'options', "
                              "'stages', 'time_limit']")
        stages = None
        if entry.get("stages") is not None:
            stages = _stages(i, entry, maxiter)
            method = "chain"
        else:
            method = entry.get("method")
            if method not in METHODS:
                raise ConfigError(f"methods[{i}]: unknown method {method!r}; valid: {sorted(METHODS)}")
        if "label" in entry and not isinstance(entry["label"], str):
            raise ConfigError(f"methods[{i}]: label must be a name (a string), got {entry['label']!r}")
        label = str(entry.get("label", method if stages is None else "+".join(m for m, _ in stages)))
        if not label or any(c in label for c in "/\\ ") or label.startswith("."):
            raise ConfigError(f"methods[{i}]: label {label!r} must be a non-empty name without spaces or slashes")
        if len(label) > MAX_LABEL:
            raise ConfigError(f"methods[{i}]: label {label[:30]!r}... is {len(label)} characters long; at most "
                              f"{MAX_LABEL} (it names the run folders)")
        if label in seen:
            raise ConfigError(f"methods[{i}]: duplicate label {label!r}; give each entry its own label")
        seen.add(label)
        options = _options(f"methods[{label}]", entry.get("options"))
        options = {} if stages else {"maxiter": maxiter, **options}
        limit = entry.get("time_limit", time_limit)
        _time_limit(f"methods[{label}].time_limit", limit)
        specs.append(MethodSpec(label, method, options, None if limit is None else float(limit), stages))
    return specs


def _options(where: str, options) -> dict:
    """A method's options: a mapping, or a preset name (e.g. trust-ncg's reference-001)."""
    options = options or {}
    if isinstance(options, str):
        options = {"preset": options}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options must be a mapping or a preset name, got {options!r}")
    return options


def _stages(i: int, entry: dict, maxiter: int) -> tuple:
    """A chain's stages: a list of method names or {method, options}; each stage's maxiter
    defaults to the study's."""
    from invfem.optim.api import METHODS

    if entry.get("method") not in (None, "chain") or entry.get("options"):
        raise ConfigError(f"methods[{i}]: a chain has 'stages' instead of 'method' and 'options'")
    stages = entry["stages"]
    if not isinstance(stages, (list, tuple)) or len(stages) < 2:
        raise ConfigError(f"methods[{i}]: stages must list at least two methods, got {stages!r}")
    out = []
    for j, stage in enumerate(stages):
        if isinstance(stage, str):
            stage = {"method": stage}
        if not isinstance(stage, dict) or sorted(set(stage) - {"method", "options"}):
            raise ConfigError(f"methods[{i}].stages[{j}] must be a method name or {{method, options}}, got {stage!r}")
        if stage.get("method") not in METHODS:
            raise ConfigError(f"methods[{i}].stages[{j}]: unknown method {stage.get('method')!r}; "
                              f"valid: {sorted(METHODS)}")
        options = _options(f"methods[{i}].stages[{j}]", stage.get("options"))
        out.append((stage["method"], {"maxiter": maxiter, **options}))
    return tuple(out)


def select_methods(study: StudyConfig, labels) -> StudyConfig:
    """The study with only the methods labelled ``labels`` (``invfem compare --methods``); an
    unknown label is a ConfigError listing the study's."""
    if not labels:
        return study
    known = [m.label for m in study.methods]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ConfigError(f"--methods: unknown label(s) {unknown}; the study's: {known}")
    return replace(study, methods=tuple(m for m in study.methods if m.label in labels))


#: keys of a variant that are study settings, not problem options
VARIANT_STUDY_KEYS = ("problem", "maxiter", "time_limit", "seeds")


def load_studies(path, **overrides) -> list[tuple[str | None, StudyConfig]]:
    """The studies of a YAML file: one ``(None, study)``, or with ``variants:`` (a mapping of
    name -> problem options merged over ``problem_options``) one ``(name, study)`` per variant,
    each writing to ``OUTPUT/<name>`` — e.g. one target per variant for reference 001. A
    variant's keys in :data:`VARIANT_STUDY_KEYS` set those study settings for it instead (another
    ``problem``, whose options then start from ``problem_options`` all the same; its own
    ``maxiter``, ``time_limit`` or ``seeds``). Every variant is checked before any runs."""
    path = Path(path)
    data = read_yaml(path)
    variants = data.pop("variants", None)
    if variants is None:
        return [(None, load_study(path, **overrides))]
    if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError(f"{path}: variants must map names to problem options, e.g. {{sin5: {{target: sin5}}}}; "
                          f"got {variants!r}")
    base = dict(data.get("problem_options") or {})
    output = overrides.get("output") or data.get("output", "results/study")
    out = []
    for name, options in variants.items():
        if not isinstance(name, str) or not name or any(c in name for c in "/\\ ") or name.startswith("."):
            raise ConfigError(f"{path}: variant name {name!r} must be a non-empty name without spaces or slashes")
        options = dict(options)
        own = {key: options.pop(key) for key in VARIANT_STUDY_KEYS if key in options}
        try:
            study = load_study(path, _data={**data, **own, "problem_options": {**base, **options}},
                               **{**overrides, "output": str(Path(output) / name)})
        except ConfigError as exc:
            raise ConfigError(f"variants[{name}]: {exc}") from None
        out.append((name, study))
    return out


def load_study(path, _data: dict | None = None, **overrides) -> StudyConfig:
    """Read a study YAML; keyword ``overrides`` (not None) replace top-level keys. A file with
    ``variants:`` holds several studies: read it with :func:`load_studies`."""
    path = Path(path)
    data = dict(read_yaml(path) if _data is None else _data)
    if "variants" in data:
        raise ConfigError(f"{path}: has variants (several studies): use load_studies, or invfem compare")
    data.update({k: v for k, v in overrides.items() if v is not None})
    _resolve_inputs(data, path.parent)
    valid = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    for key in ("problem", "methods"):
        if key not in data:
            raise ConfigError(f"{path}: missing required key {key!r}")
    return StudyConfig(**data)


def study_from_dict(data: dict) -> StudyConfig:
    """The config back from :meth:`StudyConfig.as_dict` (workers, records)."""
    if not isinstance(data, dict) or not isinstance(data.get("methods"), list) or \
            not all(isinstance(m, dict) for m in data["methods"]):
        raise ConfigError("methods must be a list of mappings")
    return StudyConfig(**{**data, "methods": [dict(m) for m in data["methods"]]})



"""Options of the generic builders (``problem: poisson``, ``problem: heat``), validated up front.

Every option is checked before any work: an unknown key, a wrong type or a bad value is a
:class:`~invfem.errors.ConfigError` naming the key (``problem_options.network.widths``)
and, for unknown keys, listing the valid ones. Formulas (``source``, ``kappa_true``,
``dirichlet``, ``u0``) are parsed here too (never ``eval``'d): see :mod:`invfem.expressions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from invfem.errors import ConfigError
from invfem.expressions import compile_expression
from invfem.fem.meshes import BUILTIN
from invfem.resources import BYTES_PER_POINT, check_memory
from invfem.nn.mlp import ACTIVATIONS, POSITIVITY, check_widths


def check_number(name, value, low=None, strict=False, integer=False):
    """A finite number (an integer if ``integer``; ``> low`` or ``>= low``) or a ConfigError naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = "" if low is None else f" {'>' if strict else '>='} {low}"
        raise ConfigError(f"{name} must be {kind}{bound}, got {value!r}")
    return int(value) if integer else float(value)


def _choice(name, value, valid):
    if value not in valid:
        raise ConfigError(f"{name} must be one of {sorted(map(str, valid))}, got {value!r}")
    return value


def formula(name, value, variables):
    """A number, a formula in ``variables`` (checked now), or a callable (Python API)."""
    if callable(value):
        return value
    try:
        compile_expression(value, variables)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return value


def parse(cls, options, where: str):
    """``cls(**options)`` with unknown keys and bad values reported as one line naming them."""
    if isinstance(options, cls):
        return options
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where} must be a mapping of options, got {options!r}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; valid: {valid}")
    values = {}
    for f in fields(cls):
        if f.name in options:
            value = options[f.name]
            nested = f.metadata.get("nested")
            values[f.name] = parse(nested, value, f"{where}.{f.name}") if nested else value
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    except TypeError as exc:       # a required option is missing
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class NetworkOptions:
    """The network kappa_theta: hidden ``widths``, ``activation``, output ``positivity`` (a positive
    transform by default: kappa must stay > 0), ``shift`` added after it."""

    widths: tuple = (20, 20, 20)
    activation: str = "tanh"
    positivity: str | None = "softplus"
    shift: float = 0.0

    def __post_init__(self):
        if not isinstance(self.widths, (list, tuple)):
            raise ConfigError(f"widths must be a list of hidden layer widths, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(check_widths(self.widths)))
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("positivity", self.positivity, POSITIVITY)
        object.__setattr__(self, "shift", check_number("shift", self.shift))


@dataclass(frozen=True)
class SyntheticOptions:
    """Data made from a known law: ``kappa_true`` (formula in x, y — or u for kappa(u) — or a
    callable), ``noise`` (``relative``: u (1 + noise U(-1, 1)) as reference 000; ``gaussian``:
    u + noise N(0, 1), which also weights the misfit by sigma = noise), observed ``at`` the free
    ``nodes`` (a fraction ``observed`` of them) or at that many random points, ``source_noise``
    (relative, on the source: residual minimisation as reference 000), heat: ``times``
    (``all`` steps, every k-th step, or a list of times), and ``data_seed``."""

    kappa_true: object
    noise: float = 0.0
    noise_kind: str = "relative"
    at: object = "nodes"
    observed: float = 1.0
    source_noise: float = 0.0
    times: object = "all"
    data_seed: int = 0

    def __post_init__(self):
        check_number("noise", self.noise, 0)
        _choice("noise_kind", self.noise_kind, ("relative", "gaussian"))
        if self.noise_kind == "gaussian" and self.noise == 0:
            raise ConfigError("noise must be > 0 for noise_kind gaussian (it is the misfit's sigma)")
        if self.at != "nodes":
            check_number("at", self.at, 1, integer=True)
            check_memory(f"at: {self.at:.4g} synthetic points", float(self.at) * BYTES_PER_POINT)
        if not 0 < self.observed <= 1:
            raise ConfigError(f"observed must be a fraction in (0, 1], got {self.observed!r}")
        check_number("source_noise", self.source_noise, 0)
        if self.times != "all" and not isinstance(self.times, (list, tuple)):
            check_number("times", self.times, 1, integer=True)
        check_number("data_seed", self.data_seed, 0, integer=True)


@dataclass(frozen=True)
class FileOptions:
    """Observations from a CSV/NPZ ``file`` (columns x, y, u — t, x, y, u for heat — optional
    sigma); ``sigma`` here applies to every row that has none. ``kappa_true`` (a formula, when
    the law behind the data is known, e.g. a synthetic test) is only used to report kappa's error."""

    file: str
    sigma: float | None = None
    kappa_true: object = None

    def __post_init__(self):
        if not isinstance(self.file, (str, Path)):
            raise ConfigError(f"file must be a path, got {self.file!r}")
        if not Path(self.file).is_file():
            raise ConfigError(f"file: observation file not found: {self.file}")
        if self.sigma is not None:
            check_number("sigma", self.sigma, 0, strict=True)


@dataclass(frozen=True)
class Snapshots:
    """Full-field snapshots given as arrays (Python API): ``times`` on the step grid, ``values``
    ``(len(times), n_dofs)``."""

    times: object
    values: object


def observations(value, where: str, variables: tuple[str, ...]):
    """A file path, ``{file: ..., sigma: ...}``, ``{synthetic: {...}}``, or (Python API) arrays."""
    if isinstance(value, (str, Path)):
        return parse(FileOptions, {"file": str(value)}, where)
    if isinstance(value, (FileOptions, SyntheticOptions, Snapshots)):
        return value
    if isinstance(value, dict) and set(value) == {"synthetic"}:
        synthetic = parse(SyntheticOptions, value["synthetic"], f"{where}.synthetic")
        formula(f"{where}.synthetic.kappa_true", synthetic.kappa_true, variables)
        return synthetic
    if isinstance(value, dict) and "file" in value:
        spec = parse(FileOptions, value, where)
        if spec.kappa_true is not None:
            formula(f"{where}.kappa_true", spec.kappa_true, variables)
        return spec
    raise ConfigError(f"{where} must be a file path, {{file: path, sigma: s}} or {{synthetic: {{kappa_true: ..., "
                      f"noise: ...}}}}, got {value!r}")


def mesh_spec(value, where: str):
    """A mesh file (must exist) or one built-in ``{name: options}``."""
    if isinstance(value, (str, Path)) and str(value) not in BUILTIN:
        if not Path(value).is_file():
            raise ConfigError(f"{where}: mesh file not found: {value}")
        return str(value)
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in BUILTIN:
            raise ConfigError(f"{where}: one built-in mesh of {sorted(BUILTIN)} with its options, or a file path; "
                              f"got {value!r}")
    return value


def dirichlet_spec(value, where: str, variables=("x", "y")):
    """A number or formula for the whole boundary, or ``{boundary name: number or formula}``."""
    if isinstance(value, dict):
        return {str(k): formula(f"{where}.{k}", v, variables) for k, v in value.items()}
    return formula(where, value, variables)


@dataclass(frozen=True)
class ExperimentOptions:
    """One experiment of ``experiments:`` (several loadings of one specimen, one law): its own
    ``observations`` (required), ``source`` and ``dirichlet`` (and ``u0`` for heat; each
    defaults to the problem's top-level value), its loss ``weight`` (default 1) and ``name``
    (default ``experiment<k>``; it names the experiment's output files)."""

    observations: object
    source: object = None
    dirichlet: object = None
    u0: object = None
    weight: float = 1.0
    name: str | None = None

    def __post_init__(self):
        check_number("weight", self.weight, 0, strict=True)
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}")


def experiments_spec(value, where: str, variables, heat: bool) -> tuple:
    """The parsed ``experiments:`` list: each entry's options checked (its formulas and its
    observations as for a single problem), defaults named ``experiment<k>``, and synthetic data
    without a ``data_seed`` drawn with seed k - 1 (independent noise per experiment)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list of experiments ({{observations: ..., source: ..., "
                          f"dirichlet: ...}}), got {value!r}")
    out, names = [], set()
    for k, entry in enumerate(value):
        at = f"{where}[{k}]"
        if isinstance(entry, dict):
            entry = dict(entry)
            obs = entry.get("observations")
            if isinstance(obs, dict) and set(obs) == {"synthetic"} and isinstance(obs["synthetic"], dict) \
                    and "data_seed" not in obs["synthetic"]:
                entry["observations"] = {"synthetic": {**obs["synthetic"], "data_seed": k}}
            if not heat and "u0" in entry:
                raise ConfigError(f"{at}: u0 is an option of heat experiments only")
        e = parse(ExperimentOptions, entry, at)
        name = e.name if e.name is not None else f"experiment{k + 1}"
        if name in names:
            raise ConfigError(f"{at}.name: {name!r} names two experiments")
        names.add(name)
        space_vars = ("x", "y")
        changes = {"name": name, "observations": observations(e.observations, f"{at}.observations",
                                                              variables)}
        if e.source is not None:
            changes["source"] = formula(f"{at}.source", e.source, ("x", "y", "t") if heat else space_vars)
        if e.dirichlet is not None:
            changes["dirichlet"] = dirichlet_spec(e.dirichlet, f"{at}.dirichlet")
        if e.u0 is not None:
            changes["u0"] = formula(f"{at}.u0", e.u0, space_vars)
        out.append(replace(e, **changes))
    return tuple(out)


@dataclass(frozen=True)
class CommonOptions:
    """Options of both builders (see :class:`PoissonOptions` and :class:`HeatOptions`).

    ``observations`` for one experiment, or ``experiments``: a list of
    :class:`ExperimentOptions` (their own source, dirichlet, observations; one law fitted to
    all, the loss their weighted sum)."""

    observations: object = None
    experiments: object = None
    mesh: object = field(default_factory=lambda: {"unit_square": {"n": 10}})
    order: int = 1
    network: NetworkOptions = field(default_factory=NetworkOptions, metadata={"nested": NetworkOptions})
    source: object = 1.0
    dirichlet: object = 0.0
    loss: str = "fem"
    regularization: float = 0.0
    backend: str = "auto"
    device: object = None

    def _check_data(self, law_variables, heat: bool):
        """``observations`` xor ``experiments``, each parsed."""
        if self.experiments is not None:
            if self.observations is not None:
                raise ConfigError("observations: give observations per experiment (experiments[k].observations), "
                                  "not also at the top level")
            object.__setattr__(self, "experiments", experiments_spec(self.experiments, "experiments", law_variables,
                                                                     heat))
        elif self.observations is None:
            raise ConfigError("observations: missing (a file, {file: ..., sigma: ...} or {synthetic: ...}; or "
                              "experiments: a list, each with its observations)")
        else:
            object.__setattr__(self, "observations", observations(self.observations, "observations",
                                                                  law_variables))

    def _check_common(self, variables):
        object.__setattr__(self, "mesh", mesh_spec(self.mesh, "mesh"))
        _choice("order", self.order, (1, 2))
        formula("source", self.source, variables)
        object.__setattr__(self, "dirichlet", dirichlet_spec(self.dirichlet, "dirichlet"))
        _choice("loss", self.loss, ("fem", "residual"))
        object.__setattr__(self, "regularization", check_number("regularization", self.regularization, 0))
        _choice("backend", self.backend, ("auto", "superlu", "cholmod", "dense"))


@dataclass(frozen=True)
class PoissonOptions(CommonOptions):
    """``problem: poisson``: -div(kappa grad u) = source, u = dirichlet on the boundary.

    ``coefficient_input``: ``x`` (kappa_theta(x)) or ``u`` (kappa_theta(u), solved by Newton);
    ``newton_rtol`` / ``newton_maxiter`` for the latter. ``source`` is a number or a formula in
    x, y. ``loss``: ``fem`` (the misfit of the FE solution) or ``residual`` (the weak-form
    residual of full-field data: no solve).
    """

    coefficient_input: str = "x"
    newton_rtol: float = 1e-12
    newton_maxiter: int = 30

    def __post_init__(self):
        _choice("coefficient_input", self.coefficient_input, ("x", "u"))
        self._check_common(("x", "y"))
        law_variables = ("u",) if self.coefficient_input == "u" else ("x", "y")
        self._check_data(law_variables, heat=False)
        check_number("newton_rtol", self.newton_rtol, 0, strict=True)
        check_number("newton_maxiter", self.newton_maxiter, 1, integer=True)


@dataclass(frozen=True)
class HeatOptions(CommonOptions):
    """``problem: heat``: u_t = div(kappa(x) grad u) + source, u = dirichlet on the boundary,
    u(0) = ``u0``; ``dt``, ``n_steps``, ``scheme`` (backward-euler or crank-nicolson). ``source``
    is a formula in x, y, t; ``u0`` and ``dirichlet`` in x, y. ``loss``: ``fem`` (the misfit of
    the time-stepped states) or ``residual`` (scheme residuals of full-field snapshots)."""

    u0: object = 0.0
    dt: float = 0.01
    n_steps: int = 20
    scheme: str = "backward-euler"

    def __post_init__(self):
        self._check_common(("x", "y", "t"))
        self._check_data(("x", "y"), heat=True)
        formula("u0", self.u0, ("x", "y"))
        check_number("dt", self.dt, 0, strict=True)
        check_number("n_steps", self.n_steps, 1, integer=True)
        _choice("scheme", self.scheme, ("backward-euler", "crank-nicolson"))

"""Reference 002's two-parameter regression on an ellipsoidal torus: approximate the origin.

    p(u, v) = ((R + r cos v) cos u,  e (R + r cos v) sin u,  r sin v),     L(u, v) = |p(u, v)|^2 / 2

(the extracted reference lost its formula; this torus has an elliptical axis of semi-axes R
and e R and a tube of radius r). Stationarity says the position vector is orthogonal to both
tangents. With ``R e^2 > r (1 - e^2)`` (the default R = 2, r = 1, e = 0.8) the stationary
points are exactly ``u in {0, pi/2, pi, 3 pi/2}`` x ``v in {0, pi}``, all in the plane z = 0:

- ``u = pi/2, 3 pi/2`` (the short axis), ``v = pi`` (inner equator): the 2 minima;
- ``u = 0, pi`` (the long axis), ``v = 0`` (outer equator): the 2 maxima;
- the other 4: saddles.

:func:`stationary_points` lists them with their kind (checked against the Hessian's signs in
the tests); :func:`basins` runs methods from a grid of starts and names the point each
reaches; :func:`plot_basins` draws them — exact Newton reaches minima, saddles and maxima
alike, while BFGS, saddle-free Newton and the trust region find minima.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from invfem.errors import ConfigError
from invfem.problem import Problem


def position(theta: torch.Tensor, R: float = 2.0, r: float = 1.0, e: float = 0.8) -> torch.Tensor:
    """The point of the torus at ``theta = (u, v)``."""
    u, v = theta[0], theta[1]
    ring = R + r * torch.cos(v)
    return torch.stack([ring * torch.cos(u), e * ring * torch.sin(u), r * torch.sin(v)])


def _check(R, r, e):
    if not (R > r > 0 and 0 < e < 1):
        raise ConfigError(f"the torus needs R > r > 0 and 0 < e < 1, got R = {R}, r = {r}, e = {e}")
    if not R * e * e > r * (1 - e * e):
        raise ConfigError(f"with R e^2 <= r (1 - e^2) (R = {R}, r = {r}, e = {e}) there are stationary points off "
                          "the plane z = 0; choose a larger R or e")


def make_problem(seed: int = 0, *, R: float = 2.0, r: float = 1.0, e: float = 0.8, start=None,
                 device=None) -> Problem:
    """The loss ``|p(u, v)|^2 / 2``; ``theta0`` uniform in [0, 2 pi)^2 (``seed``) or ``start``."""
    _check(R, r, e)
    if start is None:
        theta0 = 2 * math.pi * torch.rand(2, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    else:
        theta0 = torch.as_tensor(start, dtype=torch.float64).reshape(2)

    def loss(theta):
        p = position(theta, R, r, e)
        return 0.5 * torch.dot(p, p)

    def residual(theta):                # loss = ||p / 2^1/2||^2
        return position(theta, R, r, e) / math.sqrt(2.0)

    return Problem(name="torus", theta0=theta0.to(device), loss=loss, kappa=None, residual=residual,
                   jacobian=torch.func.jacfwd(residual),
                   info={"R": R, "r": r, "e": e, "stationary_points": stationary_points(R, r, e)})


def stationary_points(R: float = 2.0, r: float = 1.0, e: float = 0.8) -> list[dict]:
    """Every stationary point ``{"theta": (u, v), "kind": "minimum" | "saddle" | "maximum"}``."""
    _check(R, r, e)
    out = []
    for u in (0.0, math.pi / 2, math.pi, 3 * math.pi / 2):
        short_axis = abs(math.sin(u)) == 1.0                  # |p| is smallest in u there (e < 1)
        for v in (0.0, math.pi):
            inner = v == math.pi                              # |p| is smallest in v there
            kind = "minimum" if short_axis and inner else "maximum" if not short_axis and not inner else "saddle"
            out.append({"theta": (u, v), "kind": kind})
    return out


def nearest_stationary(theta, points: list[dict], tol: float = 1e-4) -> int:
    """Index of the stationary point ``theta`` sits at (angles modulo 2 pi), or -1."""
    for i, p in enumerate(points):
        d = [(float(a) - b + math.pi) % (2 * math.pi) - math.pi for a, b in zip(theta, p["theta"])]
        if math.hypot(*d) < tol:
            return i
    return -1


def basins(methods: dict, n: int = 24, R: float = 2.0, r: float = 1.0, e: float = 0.8, maxiter: int = 200) -> dict:
    """For each ``label -> (method, options)``, the stationary point reached from every start
    of an ``n x n`` grid over [0, 2 pi)^2: ``{label: (n, n) int array}`` of indices into
    :func:`stationary_points` (-1: none within ``maxiter`` iterations)."""
    from invfem.optim import minimize

    points = stationary_points(R, r, e)
    grid = (np.arange(n) + 0.5) * 2 * math.pi / n
    out = {}
    for label, (method, options) in methods.items():
        reached = np.full((n, n), -1, dtype=int)
        for i, u0 in enumerate(grid):
            for j, v0 in enumerate(grid):
                p = make_problem(R=R, r=r, e=e, start=(u0, v0))
                res = minimize(p.loss, p.theta0, method=method, options={"maxiter": maxiter, **options})
                if res.optimality < 1e-6:
                    reached[i, j] = nearest_stationary(res.x.tolist(), points)
        out[label] = reached
    return out


def plot_basins(result: dict, path, R: float = 2.0, r: float = 1.0, e: float = 0.8):
    """One panel per method: each start coloured by the kind of stationary point it reached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    points = stationary_points(R, r, e)
    kinds = {"minimum": 0, "saddle": 1, "maximum": 2}
    fig = Figure(figsize=(3.2 * len(result), 3.4))
    FigureCanvasAgg(fig)
    cmap = ListedColormap(["#bbbbbb", "tab:blue", "tab:orange", "tab:red"])
    for k, (label, reached) in enumerate(result.items()):
        ax = fig.add_subplot(1, len(result), k + 1)
        colour = np.vectorize(lambda i: 0 if i < 0 else 1 + kinds[points[i]["kind"]])(reached)
        n = reached.shape[0]
        ax.imshow(colour.T, origin="lower", extent=(0, 2 * math.pi, 0, 2 * math.pi), cmap=cmap, vmin=0, vmax=3)
        for p in points:
            ax.plot(*p["theta"], "k" + {"minimum": "o", "saddle": "s", "maximum": "^"}[p["kind"]], ms=5)
        counts = {kind: int(sum((reached == i).sum() for i, p in enumerate(points) if p["kind"] == kind))
                  for kind in kinds}
        ax.set(title=f"{label}\n{counts['minimum']} min / {counts['saddle']} saddle / {counts['maximum']} max "
                     f"of {n * n}", xlabel="u0", ylabel="v0")
        ax.title.set_fontsize(8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path

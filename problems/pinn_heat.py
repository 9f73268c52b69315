"""Reference 001's transient heat PINN.

    u_t - div(alpha grad u) = 0 in (0, 1)^2 x (0, T),   u = 1 on the top and left sides,
    u = 0 on the bottom and right sides,                 u(t = 0) = 0,
    L(theta) = lam (f_BC + f_IC) + (1 - lam) f_PDE,

each ``f`` the mean square of its residual at Latin hypercube collocation points (10,000 in
space-time, 20 % of them on the boundary: half at t = 0, half on the sides by area — the split
is ours, the reference does not give it). The network ``u_theta(x, y, t)`` is a tanh MLP; the
reference states "four hidden layers of 24 neurons" and "2,521 parameters", which is five
hidden layers of 24 (four give 1,921): we take the count, five layers (``widths`` to change it).
Neither ``alpha`` nor ``lam`` is given in the extracted text: ours are alpha = 0.1, lam = 0.5.

Tested (``info["test_error"]``) on 100,000 LHS points of the square at ``t = 1`` against the
P1 finite-element solution by invfem's own heat stepper (backward Euler, ``fem_n`` x ``fem_n``
mesh, step ``fem_dt``), computed once on first use: the relative L2 error there.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.tri import LinearTriInterpolator, Triangulation

from invfem.errors import ConfigError
from invfem.fem.heat import HeatStepper
from invfem.fem.meshes import unit_square
from invfem.fem.space import FunctionSpace
from invfem.pinn import HeatResidual, PinnField, PinnLoss, ValueTerm, latin_hypercube, space_time_points
from invfem.problem import Problem

from ._options import check_number
from ._pinn import count, network, relative_error

REFERENCE_001_WIDTHS = (3, 24, 24, 24, 24, 24, 1)      # 2,521 parameters (the reference's count)
HOT_FACES = {(0, 0), (1, 1)}                           # x = 0 (left) and y = 1 (top): u = 1


def fem_solution(alpha: float, t: float, n: int, dt: float):
    """The P1 solution at time ``t`` on an ``n x n`` mesh (backward Euler, step ``dt``) as a
    function of points ``(m, 2) -> (m,)``."""
    n_steps = max(1, int(round(t / dt)))
    space = FunctionSpace(unit_square(n), order=1)
    xy = space.dof_coordinates[space.dirichlet_index]
    hot = (xy[:, 0] <= 1e-12) | (xy[:, 1] >= 1 - 1e-12)
    u_d = hot.to(torch.float64)
    stepper = HeatStepper(space, t / n_steps, n_steps, u_dirichlet=u_d)
    kappa = torch.full((space.n_quad,), float(alpha), dtype=torch.float64)
    with torch.no_grad():
        final = stepper.trajectory(kappa, torch.zeros(space.n_dofs, dtype=torch.float64))[-1]
    # P1 dofs are the mesh's vertices: the FE field is matplotlib's linear interpolant on the
    # mesh's own triangles (a trapezoid-map point locator: 10^5 points in well under a second,
    # where scikit-fem's probes take minutes and gigabytes)
    mesh = space.mesh
    interpolant = LinearTriInterpolator(Triangulation(mesh.p[0], mesh.p[1], mesh.t.T), final.cpu().numpy())

    def at(points):
        xy = torch.as_tensor(points, dtype=torch.float64).cpu().numpy()
        values = interpolant(xy[:, 0], xy[:, 1])
        if np.ma.is_masked(values):
            raise ConfigError(f"point {xy[int(np.flatnonzero(np.ma.getmaskarray(values))[0])].tolist()} lies outside the unit square")
        return torch.from_numpy(np.asarray(values, dtype=np.float64))
    return at


def make_problem(seed: int = 0, *, n_points: int = 10000, boundary_fraction: float = 0.2,
                 initial_share: float = 0.5, alpha: float = 0.1, lam: float = 0.5, t_final: float = 5.0,
                 widths=REFERENCE_001_WIDTHS, activation: str = "tanh", test_points: int = 100000,
                 test_time: float = 1.0, fem_n: int = 64, fem_dt: float = 0.005, data_seed: int = 0,
                 device=None) -> Problem:
    """The heat PINN above; ``seed`` initialises the network, ``data_seed`` draws the points."""
    alpha = check_number("alpha", alpha, low=0, strict=True)
    t_final = check_number("t_final", t_final, low=0, strict=True)
    lam = check_number("lam", lam)
    if not 0 <= lam <= 1:
        raise ConfigError(f"lam must be in [0, 1] (the loss is lam (f_BC + f_IC) + (1 - lam) f_PDE), got {lam!r}")
    test_time = check_number("test_time", test_time)
    fem_n, fem_dt = count("fem_n", fem_n, 2), check_number("fem_dt", fem_dt, low=0, strict=True)
    if not 0 < test_time <= t_final:
        raise ConfigError(f"test_time must be in (0, t_final = {t_final}], got {test_time!r}")
    mlp = network(widths, 3, activation, 1.0, output_bias=True)
    pts = space_time_points(count("n_points", n_points, 3), [0.0, 0.0], [1.0, 1.0], t_final,
                            boundary_fraction, initial_share, seed=int(data_seed))
    hot = torch.tensor([tuple(f) in HOT_FACES for f in pts.faces])[pts.face].to(torch.float64)
    on = lambda t: t.to(device)
    field = PinnField(mlp)
    terms = {"pde": HeatResidual(on(pts.interior), alpha=alpha, dims=(0, 1), time=2),
             "bc": ValueTerm(on(pts.boundary), on(hot)), "ic": ValueTerm(on(pts.initial), 0.0)}
    loss = PinnLoss(field, terms, {"pde": 1.0 - lam, "bc": lam, "ic": lam})
    test_xy = latin_hypercube(count("test_points", test_points), [0.0, 0.0], [1.0, 1.0], seed=int(data_seed) + 10)
    test_in = on(torch.cat([test_xy, torch.full((test_xy.shape[0], 1), test_time, dtype=torch.float64)], 1))
    reference = {}

    def fem_at_test():
        if "u" not in reference:
            reference["u"] = on(fem_solution(alpha, test_time, fem_n, fem_dt)(test_xy))
        return reference["u"]

    def test_error(theta):
        with torch.no_grad():
            return relative_error(field(theta, test_in), fem_at_test())

    return Problem(name="pinn_heat", theta0=mlp.init(seed, device=device), loss=loss, residual=loss.residual,
                   structure=loss,
                   kappa=lambda theta, p: field(theta, p),
                   info={"points": pts, "test_points": test_in, "test_error": test_error, "fem_at_test": fem_at_test,
                         "fem_solution": lambda: fem_solution(alpha, test_time, fem_n, fem_dt), "mlp": mlp,
                         "field": field, "terms": loss.terms_values, "n_points": pts.n_points, "alpha": alpha,
                         "lam": lam, "kappa_input": "x, y, t",
                         "traces": {"test_error": test_error,
                                    "terms": lambda theta: list(loss.terms_values(theta).values())}})

"""Make the two-experiment example's inputs: a plate with a hole and two sets of noisy point data.

    python configs/examples/plate/make_data.py

writes ``plate.msh`` (the square [-1, 1]^2 minus the disc of radius 0.3, boundary groups
``outer`` and ``hole``) and two observation files of one specimen with the law
kappa(u) = 1 + u^2, each the FE solution (Newton) on a mesh twice as fine in each direction
as the one given, at 40 random points, with Gaussian noise sigma = 5e-3 (above the given mesh's discretization error):

- ``loaded.csv``: -div(kappa(u) grad u) = 4, u = 0 on both boundaries (u in [0, ~0.3]);
- ``heated.csv``: no source, u = 0 on ``outer`` and u = 1 on ``hole`` (u in [0, 1]).

The heated experiment alone cannot fix kappa's scale: kappa -> c kappa leaves its state
unchanged (no source, only Dirichlet data); the loaded one alone sees u <= 0.3 only.
Together they determine kappa on [0, 1]. Seeded: the files are reproducible.
"""

from pathlib import Path

import numpy as np
import skfem
import torch

from invfem.fem import FunctionSpace, point_observation, write_gmsh
from invfem.fem.nonlinear import NonlinearPoisson

HERE = Path(__file__).parent
SIGMA = 5e-3
N_POINTS = 40
RADIUS = 0.3


def plate(n_around: int, n_across: int) -> skfem.MeshTri:
    """The plate: rays from the hole to the square, ``n_around`` of them, ``n_across`` cells along
    each (graded towards the hole), quadrilaterals cut into triangles along alternating diagonals."""
    phi = np.linspace(0, 2 * np.pi, n_around, endpoint=False)
    s = np.linspace(0, 1, n_across + 1) ** 1.3
    direction = np.stack([np.cos(phi), np.sin(phi)])
    square = direction / np.abs(direction).max(axis=0)                  # where each ray meets the square
    p = (RADIUS * direction[:, None, :] * (1 - s)[None, :, None] + square[:, None, :] * s[None, :, None])
    p = p.reshape(2, -1)                                                # index: i_s * n_around + i_phi
    node = lambda i, j: i * n_around + j % n_around
    triangles = []
    for i in range(n_across):
        for j in range(n_around):
            a, b, c, d = node(i, j), node(i, j + 1), node(i + 1, j + 1), node(i + 1, j)
            triangles += [(a, b, c), (a, c, d)] if (i + j) % 2 == 0 else [(a, b, d), (b, c, d)]
    mesh = skfem.MeshTri(np.ascontiguousarray(p), np.ascontiguousarray(np.array(triangles).T))
    radius = lambda x: np.hypot(x[0], x[1])
    mesh = mesh.with_boundaries({"hole": lambda x: radius(x) < RADIUS + 1e-9})
    rest = np.setdiff1d(mesh.boundary_facets(), mesh.boundaries["hole"])
    return mesh.with_boundaries({"outer": rest})


def observe(fine: skfem.MeshTri, source: float, hole: float, rng: np.random.Generator) -> np.ndarray:
    """Columns x, y, u, sigma: the state of kappa(u) = 1 + u^2 at N_POINTS random points, noisy."""
    space = FunctionSpace(fine, 1, dirichlet=["outer", "hole"])
    values = torch.zeros(space.n_dofs, dtype=torch.float64)
    values[torch.as_tensor(space.boundary_dofs("hole"))] = hole
    pde = NonlinearPoisson(space, lambda x, y: source + 0 * x, u_dirichlet=values[space.dirichlet_index])
    u = pde.newton(lambda v: 1 + v[..., 0] ** 2)[0]
    points = []
    while len(points) < N_POINTS:                     # uniform in the plate, off both boundaries
        xy = rng.uniform(-0.95, 0.95, 2)
        if np.hypot(*xy) > RADIUS + 0.05:
            points.append(xy)
    points = np.array(points)
    observed = point_observation(space, points)(u).numpy() + SIGMA * rng.standard_normal(N_POINTS)
    return np.column_stack([points, observed, np.full(N_POINTS, SIGMA)])


def main():
    write_gmsh(HERE / "plate.msh", plate(48, 12))
    fine = plate(96, 24)
    rng = np.random.default_rng(2026)
    for name, source, hole in [("loaded", 4.0, 0.0), ("heated", 0.0, 1.0)]:
        table = observe(fine, source, hole, rng)
        np.savetxt(HERE / f"{name}.csv", table, delimiter=",", header="x,y,u,sigma", comments="", fmt="%.10g")
        print(f"wrote {HERE / name}.csv: u in [{table[:, 2].min():.3f}, {table[:, 2].max():.3f}]")
    print(f"wrote {HERE / 'plate.msh'}")


if __name__ == "__main__":
    main()

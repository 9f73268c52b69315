"""Make the example's input files: a gmsh mesh of an L-shaped domain and 60 noisy point observations.

    python configs/examples/lshape/make_data.py

writes ``lshape.msh`` (the L-shape [-1, 1]^2 minus (0, 1]^2, 768 triangles, boundary groups
``outer`` and ``notch`` — the two edges at the re-entrant corner) and ``observations.csv``
(columns x, y, u, sigma). The data are what a user would bring: the FE solution of

    -div(kappa grad u) = 1,  u = 0 on outer,  u = 0.05 (x + y) on notch,
    kappa(x, y) = 1 + 0.5 x^2 + 0.3 y,

computed on a mesh refined twice more than the one given (no "inverse crime": the data do
not come from the mesh they are fitted on), at 60 random points, with Gaussian noise of
standard deviation sigma = 1e-3 (about 1% of u). Seeded: the files are reproducible.
"""

from pathlib import Path

import numpy as np
import torch

from invfem.fem import DirichletSystem, FunctionSpace, load_vector, lshape, point_observation, stiffness_map, write_gmsh

HERE = Path(__file__).parent
SIGMA = 1e-3
N_POINTS = 60


def with_groups(mesh):
    """The L-shape with its boundary split into ``notch`` (x = 0, y > 0 and y = 0, x > 0) and ``outer``."""
    notch = lambda x: (np.isclose(x[0], 0) & (x[1] > 0)) | (np.isclose(x[1], 0) & (x[0] > 0))
    mesh = mesh.with_boundaries({"notch": notch})
    rest = np.setdiff1d(mesh.boundary_facets(), mesh.boundaries["notch"])
    return mesh.with_boundaries({"outer": rest})


def main():
    write_gmsh(HERE / "lshape.msh", with_groups(lshape(refine=3)))
    fine = FunctionSpace(with_groups(lshape(refine=5)), 1, dirichlet=["outer", "notch"])
    xy = fine.dof_coordinates
    u_d = torch.zeros(fine.n_dofs, dtype=torch.float64)
    notch = torch.as_tensor(fine.boundary_dofs("notch"))
    u_d[notch] = 0.05 * (xy[notch, 0] + xy[notch, 1])
    q = fine.quadrature_points
    kappa = 1 + 0.5 * q[:, 0] ** 2 + 0.3 * q[:, 1]
    stiffness = stiffness_map(fine)
    system = DirichletSystem.build(fine, stiffness.pattern)
    u = system.solve(stiffness.values(kappa), load_vector(fine, lambda x, y: torch.ones_like(x)),
                     u_d[fine.dirichlet_index])
    rng = np.random.default_rng(2026)
    points = []
    while len(points) < N_POINTS:                     # uniform in the L-shape, off the boundary
        x, y = rng.uniform(-0.95, 0.95, 2)
        if not (x > -0.05 and y > -0.05):
            points.append((x, y))
    points = np.array(points)
    values = point_observation(fine, points)(u).numpy() + SIGMA * rng.standard_normal(N_POINTS)
    table = np.column_stack([points, values, np.full(N_POINTS, SIGMA)])
    np.savetxt(HERE / "observations.csv", table, delimiter=",", header="x,y,u,sigma", comments="", fmt="%.10g")
    print(f"wrote {HERE / 'lshape.msh'} and {HERE / 'observations.csv'} ({N_POINTS} points, sigma = {SIGMA})")


if __name__ == "__main__":
    main()

import numpy as np
import pytest
import torch
from skfem import BilinearForm, LinearForm, asm
from skfem.helpers import dot, grad

from invfem.derivatives import taylor_test
from invfem.errors import ShapeError
from invfem.fem import DirichletSystem, FunctionSpace, load_vector, mass_map, rectangle, stiffness_map, unit_square


def test_unit_square_sizes():
    mesh = unit_square(10)
    assert mesh.p.shape[1] == 121 and mesh.t.shape[1] == 200
    assert FunctionSpace(mesh, 1).n_free == 81
    assert FunctionSpace(unit_square(4), 2).n_dofs == 81


@pytest.mark.parametrize("order", [1, 2])
def test_stiffness_and_mass_equal_scikit_fem(order):
    space = FunctionSpace(rectangle(4, 3, (0.0, 2.0), (0.0, 1.0)), order)
    xq = space.quadrature_points
    kappa = 1.0 + xq[:, 0] ** 2 + torch.sin(3 * xq[:, 1])

    @BilinearForm
    def weighted_laplace(u, v, w):
        return (1.0 + w.x[0] ** 2 + np.sin(3 * w.x[1])) * dot(grad(u), grad(v))

    ref = asm(weighted_laplace, space.basis)
    assert abs(stiffness_map(space).to_scipy(kappa) - ref).max() < 1e-13 * abs(ref).max()
    mass_ref = asm(BilinearForm(lambda u, v, w: (1 + w.x[1]) * u * v), space.basis)
    assert abs(mass_map(space).to_scipy(1 + xq[:, 1]) - mass_ref).max() < 1e-14


def test_load_vector_equals_scikit_fem():
    space = FunctionSpace(unit_square(5), 2)
    ref = asm(LinearForm(lambda v, w: (w.x[0] * w.x[1] + 1) * v), space.basis)
    np.testing.assert_allclose(load_vector(space, lambda x, y: x * y + 1).numpy(), ref, rtol=1e-13, atol=1e-15)


def test_interpolation_is_exact_for_linear_fields():
    space = FunctionSpace(unit_square(3), 2)
    xy = space.dof_coordinates
    u = 2 * xy[:, 0] - 3 * xy[:, 1] + 1
    xq = space.quadrature_points
    torch.testing.assert_close(space.interpolate(u), 2 * xq[:, 0] - 3 * xq[:, 1] + 1)
    torch.testing.assert_close(space.interpolate_grad(u), torch.tensor([2.0, -3.0]).expand(space.n_quad, 2))


def test_stiffness_map_taylor_rates(gen):
    space = FunctionSpace(unit_square(3), 1)
    stiff = stiffness_map(space)
    w = torch.randn(stiff.pattern.nnz, generator=gen)
    f = lambda kappa: torch.sin(w @ stiff.values(kappa)) + (stiff.values(kappa) ** 3).sum()
    kappa = 1 + space.quadrature_points[:, 0]
    result = taylor_test(f, kappa, torch.randn(space.n_quad, generator=gen), h0=1e-2)
    assert result.passed(), result.rates


def _manufactured_l2_error(n, order):
    u_exact = lambda x, y: torch.sin(np.pi * x) * torch.exp(y)
    kappa = lambda x, y: 1 + x ** 2 + y

    def f(x, y):  # -div(kappa grad u)
        ux, uy = np.pi * torch.cos(np.pi * x) * torch.exp(y), u_exact(x, y)
        return -(2 * x * ux + kappa(x, y) * (-np.pi ** 2) * u_exact(x, y) + uy + kappa(x, y) * uy)

    space = FunctionSpace(unit_square(n), order)
    stiff = stiffness_map(space)
    xq = space.quadrature_points
    system = DirichletSystem.build(space, stiff.pattern)
    u = system.solve(stiff.values(kappa(xq[:, 0], xq[:, 1])), load_vector(space, f), space.dirichlet_values(u_exact))
    return float(torch.sqrt(space.integrate((space.interpolate(u) - u_exact(xq[:, 0], xq[:, 1])) ** 2)))


@pytest.mark.parametrize("order, expected", [(1, 2.0), (2, 3.0)])
def test_manufactured_solution_l2_rate(order, expected):
    ns = [4, 8, 16, 32]
    errors = [_manufactured_l2_error(n, order) for n in ns]
    rate = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert abs(rate - expected) < 0.15, (rate, errors)


def test_bad_shapes_raise():
    space = FunctionSpace(unit_square(2), 1)
    with pytest.raises(ShapeError, match="quadrature"):
        stiffness_map(space).values(torch.ones(3))
    with pytest.raises(ShapeError, match="nodal"):
        space.interpolate(torch.ones(4))
    with pytest.raises(ShapeError, match="order"):
        FunctionSpace(unit_square(2), 3)
    with pytest.raises(ShapeError):
        unit_square(0)
    with pytest.raises(ShapeError, match="Dirichlet"):
        FunctionSpace(unit_square(2), 1, dirichlet=[0, 99])


@pytest.mark.parametrize("order", [1, 2])
def test_coupling_matrix_equals_scatter_points_and_the_dense_coupling(order):
    """C(v) as one sparse CSR matrix: the same product as scatter_points, kept rows only, and
    column q equal to (dA/dkappa_q) v assembled densely."""
    space = FunctionSpace(unit_square(3), order=order)
    k_map = stiffness_map(space)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(2, space.n_dofs, generator=gen, dtype=torch.float64)
    coef = k_map.coupling(v)                                   # two couplings stacked
    rows = torch.randn(space.n_quad, 7, generator=gen, dtype=torch.float64)
    full = space.coupling_matrix(coef)
    assert full.shape == (2 * space.n_dofs, space.n_quad)
    torch.testing.assert_close(full @ rows, space.scatter_points(coef, rows).reshape(-1, 7), rtol=1e-13, atol=1e-14)
    free = space.coupling_matrix(coef, space.free_rows, space.n_free)     # Dirichlet rows dropped
    scattered = space.scatter_points(coef, rows, dof_rows=space.free_rows)[:, :space.n_free]
    torch.testing.assert_close(free @ rows, scattered.reshape(-1, 7), rtol=1e-13, atol=1e-14)
    dense = np.stack([k_map.to_scipy(e).toarray() @ v[0].numpy() for e in torch.eye(space.n_quad,
                                                                                 dtype=torch.float64)], 1)
    np.testing.assert_allclose(full.to_dense()[:space.n_dofs].numpy(), dense, rtol=1e-12, atol=1e-14)

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

from invfem.derivatives import taylor_test
from invfem.errors import BackendError, NonFiniteError, PatternMismatchError, ShapeError, SingularMatrixError
from invfem.linalg import SparseSolver, SparsityPattern, available_backends, sparse_solve


def _system(n=7, seed=3, symmetric=False):
    m = sp.random(n, n, density=0.4, random_state=seed) + 4.0 * sp.eye(n)
    if symmetric:
        m = m + m.T
    pattern, values = SparsityPattern.from_scipy(m)
    return pattern, values, SparseSolver(pattern)


def _functional(solve, w):
    """A scalar with non-zero second (and third) derivatives in the solution."""
    def f(values, b):
        u = solve(values, b)
        return (w @ u) ** 2 + (u ** 3).sum()
    return f


@pytest.fixture
def setup(gen):
    pattern, values, solver = _system()
    b = torch.randn(pattern.n, generator=gen)
    w = torch.randn(pattern.n, generator=gen)
    sparse = _functional(lambda v, rhs: sparse_solve(v, rhs, solver), w)
    dense = _functional(lambda v, rhs: torch.linalg.solve(pattern.to_dense(v), rhs), w)
    return pattern, values, solver, b, sparse, dense


def test_forward_matches_scipy(setup):
    pattern, values, solver, b, *_ = setup
    u = sparse_solve(values, b, solver)
    ref = sp.linalg.spsolve(pattern.to_scipy(values).tocsc(), b.numpy())
    np.testing.assert_allclose(u.numpy(), ref, rtol=1e-12)
    ut = sparse_solve(values, b, solver, transpose=True)
    np.testing.assert_allclose(ut.numpy(), sp.linalg.spsolve(pattern.to_scipy(values).T.tocsc(), b.numpy()), rtol=1e-12)


@pytest.mark.parametrize("wrt", ["values", "b"])
def test_taylor_rates(setup, gen, wrt):
    pattern, values, solver, b, sparse, _ = setup
    if wrt == "values":
        f, x, d = (lambda v: sparse(v, b)), values, torch.randn(pattern.nnz, generator=gen)
    else:
        f, x, d = (lambda rhs: sparse(values, rhs)), b, torch.randn(pattern.n, generator=gen)
    result = taylor_test(f, x, d, h0=1e-2)
    r0, r1, r2 = result.min_rates
    assert r0 >= 0.95 and r1 >= 1.95 and r2 >= 2.95, result.rates


def test_taylor_rates_detect_a_wrong_rule(setup, gen):
    """The test can fail: a loss whose 'gradient' misses a factor 2 gives rate 1 for r1."""
    pattern, values, solver, b, sparse, _ = setup

    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x ** 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return g * ctx.saved_tensors[0]  # should be 2 x g

        @staticmethod
        def jvp(ctx, t):
            return t * ctx.saved_tensors[0]

    f = lambda v: Wrong.apply(sparse(v, b))
    result = taylor_test(f, values, torch.randn(pattern.nnz, generator=gen), h0=1e-2)
    assert result.min_rates[1] < 1.5


def test_gradients_match_dense_reference(setup):
    _, values, _, b, sparse, dense = setup
    for argnum in (0, 1):
        torch.testing.assert_close(grad(sparse, argnums=argnum)(values, b), grad(dense, argnums=argnum)(values, b), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("argnum", [0, 1])
def test_hessians_agree_with_dense_reference(setup, argnum):
    _, values, _, b, sparse, dense = setup
    ref = hessian(dense, argnums=argnum)(values, b)
    scale = ref.abs().max()
    for name, h in {
        "torch.func.hessian": hessian(sparse, argnums=argnum)(values, b),
        "jacrev(jacrev)": jacrev(jacrev(sparse, argnums=argnum), argnums=argnum)(values, b),
        "autograd.functional": torch.autograd.functional.hessian(
            lambda x: sparse(x, b) if argnum == 0 else sparse(values, x), values if argnum == 0 else b),
    }.items():
        assert (h - ref).abs().max() / scale < 1e-10, name
        assert (h - h.T).abs().max() / scale < 1e-12, name


def test_mixed_second_derivative_by_reverse_over_reverse(setup):
    _, values, _, b, sparse, dense = setup
    mixed = jacrev(jacrev(sparse, argnums=1), argnums=0)(values, b)
    ref = jacrev(jacrev(dense, argnums=1), argnums=0)(values, b)
    torch.testing.assert_close(mixed, ref, rtol=1e-10, atol=1e-12)


def test_first_order_forward_mode_matches_reverse(setup):
    pattern, values, solver, b, *_ = setup
    f = lambda v: sparse_solve(v, b, solver)
    torch.testing.assert_close(jacfwd(f)(values), jacrev(f)(values), rtol=1e-10, atol=1e-13)


def test_nested_forward_mode_is_refused_not_silently_wrong(setup):
    _, values, _, b, sparse, _ = setup
    with pytest.raises(NotImplementedError, match="197867"):
        jacfwd(jacfwd(sparse))(values, b)


def test_vmap_over_64_rhs_is_one_factorization_and_one_solve(gen):
    pattern, values, solver = _system(n=20)
    rhs = torch.randn(64, pattern.n, generator=gen)
    solver.clear()
    solver.stats.reset()
    u = vmap(lambda r: sparse_solve(values, r, solver))(rhs)
    assert solver.stats.factorizations == 1
    assert solver.stats.solve_calls == 1
    assert solver.stats.rhs_solved == 64
    torch.testing.assert_close(u, torch.linalg.solve(pattern.to_dense(values), rhs.T).T, rtol=1e-10, atol=1e-12)


def test_vmap_over_matrices_and_native_multi_rhs(gen):
    pattern, values, solver = _system()
    batch = values + 0.1 * torch.randn(3, pattern.nnz, generator=gen)
    b = torch.randn(pattern.n, 2, generator=gen)
    u = vmap(lambda v: sparse_solve(v, b, solver))(batch)
    ref = torch.stack([torch.linalg.solve(pattern.to_dense(v), b) for v in batch])
    torch.testing.assert_close(u, ref, rtol=1e-10, atol=1e-12)


def test_cache_reuses_factorization_for_equal_values(setup):
    pattern, values, solver, b, *_ = setup
    solver.clear()
    solver.stats.reset()
    sparse_solve(values, b, solver)
    sparse_solve(values.clone(), b, solver, transpose=True)
    assert solver.stats.factorizations == 1
    sparse_solve(values * 1.5, b, solver)
    assert solver.stats.factorizations == 2


def test_singular_matrix_raises():
    pattern, values = SparsityPattern.from_scipy(sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 4.0]])))
    with pytest.raises(SingularMatrixError):
        sparse_solve(values, torch.ones(2), SparseSolver(pattern))
    pattern, values = SparsityPattern.from_scipy(sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]) + 1e-300 * np.ones((2, 2))))
    with pytest.raises(SingularMatrixError):
        sparse_solve(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.ones(2), SparseSolver(pattern))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_and_rhs_raise(setup, bad):
    pattern, values, solver, b, *_ = setup
    with pytest.raises(NonFiniteError, match="NaN/inf"):
        sparse_solve(torch.where(torch.arange(pattern.nnz) == 2, bad, values), b, solver)
    with pytest.raises(NonFiniteError):
        sparse_solve(values, torch.where(torch.arange(pattern.n) == 1, bad, b), solver)


def test_shape_and_pattern_errors(setup):
    pattern, values, solver, b, *_ = setup
    with pytest.raises(PatternMismatchError, match="shape"):
        sparse_solve(values[:-1], b, solver)
    with pytest.raises(PatternMismatchError, match="float64"):
        sparse_solve(values.float(), b, solver)
    with pytest.raises(ShapeError, match="right-hand side"):
        sparse_solve(values, b[:-1], solver)
    with pytest.raises(ShapeError, match="right-hand side"):
        sparse_solve(values, b.reshape(1, 1, -1), solver)
    other = sp.csr_matrix(np.ones((pattern.n, pattern.n)))
    with pytest.raises(PatternMismatchError, match="outside the pattern"):
        pattern.values_of(other)
    with pytest.raises(TypeError):
        sparse_solve(values, b, "superlu")


def test_values_of_round_trips():
    m = sp.random(6, 6, density=0.5, random_state=0) + sp.eye(6)
    pattern, values = SparsityPattern.from_scipy(m)
    torch.testing.assert_close(pattern.values_of(m), values)
    assert abs(pattern.to_scipy(values) - m).max() == 0


def test_unknown_backend_is_named():
    pattern, _, _ = _system()
    with pytest.raises(BackendError, match="'umfpack'.*valid"):
        SparseSolver(pattern, backend="umfpack")


@pytest.mark.skipif("cholmod" not in available_backends(), reason="cholespy not installed")
def test_cholmod_backend_matches_superlu(gen):
    m = sp.random(30, 30, density=0.2, random_state=2)
    m = m @ m.T + 30 * sp.eye(30)
    pattern, values = SparsityPattern.from_scipy(m)
    b = torch.randn(30, 3, generator=gen)
    u = sparse_solve(values, b, SparseSolver(pattern, "cholmod"))
    torch.testing.assert_close(u, sparse_solve(values, b, SparseSolver(pattern)), rtol=1e-10, atol=1e-12)
    w = torch.randn(30, 3, generator=gen)
    f = lambda v, s: (w * sparse_solve(v, b, s) ** 2).sum()
    torch.testing.assert_close(hessian(f)(values, SparseSolver(pattern, "cholmod")), hessian(f)(values, SparseSolver(pattern)))


@pytest.mark.parametrize("offset", [-100, 0, 1, 200])
def test_symmetric_product_both_forms(offset):
    """Both forms (one product up to the limit, a product and a transposed sum above it)."""
    from invfem.linalg.dense import ONE_PRODUCT_LIMIT, symmetric_product

    k = ONE_PRODUCT_LIMIT + offset
    a, b = torch.randn(k, 40, dtype=torch.float64), torch.randn(k, 40, dtype=torch.float64)
    ref = a.T @ b + b.T @ a
    got = symmetric_product(a, b)
    assert float((got - ref).abs().max()) < 1e-12 * float(ref.abs().max())
    assert float((got - got.T).abs().max()) < 1e-13 * float(ref.abs().max())

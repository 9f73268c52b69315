"""Device-agnostic code: the dense (GPU-path) solver and torch subproblem on the CPU, and the
same computations on CUDA where a GPU is present (skipped without one)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from invfem.derivatives import hessian, symmetry_error
from invfem.errors import ConfigError
from invfem.linalg import SparseSolver, SparsityPattern, sparse_solve
from invfem.linalg.backends import AutoBackend, CholmodFactor, DenseFactor, SuperLUFactor, available_backends
from invfem.optim import minimize, more_sorensen
from invfem.problems import poisson_fem, poisson_nonlinear_fem

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _matrix(symmetric, n=9, seed=0):
    m = sp.random(n, n, density=0.4, random_state=seed) + 5.0 * sp.eye(n)
    return SparsityPattern.from_scipy(m + m.T if symmetric else m)


@pytest.mark.parametrize("symmetric", [True, False])
def test_dense_backend_equals_superlu_with_exact_second_derivatives(symmetric, gen):
    pattern, values = _matrix(symmetric)
    b = torch.randn(pattern.n, generator=gen)
    dense, lu = SparseSolver(pattern, "dense"), SparseSolver(pattern, "superlu")
    for transpose in (False, True):
        torch.testing.assert_close(sparse_solve(values, b, dense, transpose), sparse_solve(values, b, lu, transpose),
                                   rtol=1e-12, atol=1e-13)
    many = torch.randn(pattern.n, 5, generator=gen)
    torch.testing.assert_close(sparse_solve(values, many, dense), sparse_solve(values, many, lu), rtol=1e-12, atol=1e-13)
    assert isinstance(dense.factor(values), DenseFactor) and (dense.factor(values)._chol is None) == (not symmetric)

    def f(v, solver):
        return (sparse_solve(v, b, solver) ** 3).sum()

    torch.testing.assert_close(torch.func.hessian(f)(values, dense), torch.func.hessian(f)(values, lu), rtol=1e-10,
                               atol=1e-12)


def test_auto_backend_picks_cholmod_for_spd_and_lu_otherwise():
    spd, spd_values = _matrix(True)
    general, general_values = _matrix(False)
    auto = AutoBackend()
    expected = CholmodFactor if "cholmod" in available_backends() else SuperLUFactor
    assert isinstance(auto.factorize(spd, spd_values), expected)
    assert isinstance(auto.factorize(general, general_values), SuperLUFactor)
    indefinite = spd_values.clone()
    indefinite[spd.rows_t == spd.cols_t] = -50.0          # symmetric, not positive definite
    factor = auto.factorize(spd, indefinite)
    assert isinstance(factor, SuperLUFactor)
    b = torch.ones(spd.n)
    np.testing.assert_allclose(spd.to_scipy(indefinite) @ factor.solve(b, False).numpy(), b.numpy(), atol=1e-10)


def test_transpose_index_maps_values_to_the_transpose():
    pattern, values = _matrix(False)
    sym_pattern, sym_values = _matrix(True)
    moved = sym_values[sym_pattern.transpose_index()]
    np.testing.assert_allclose(sym_pattern.to_scipy(moved).toarray(), sym_pattern.to_scipy(sym_values).T.toarray())
    if not pattern.is_symmetric():
        with pytest.raises(ValueError, match="symmetric"):
            pattern.transpose_index()


def test_more_sorensen_on_tensors_equals_numpy(gen):
    a = torch.randn(12, 12, generator=gen)
    h, g = a + a.T, torch.randn(12, generator=gen)
    for radius in (0.1, 1.0, 100.0):
        on_tensor = more_sorensen(h, g, radius)
        on_numpy = more_sorensen(h.numpy(), g.numpy(), radius)
        assert torch.is_tensor(on_tensor.p) and isinstance(on_numpy.p, np.ndarray)
        np.testing.assert_allclose(on_tensor.p.numpy(), on_numpy.p, rtol=1e-12, atol=1e-14)


def test_device_option_and_config_errors():
    p = poisson_fem.make_problem(n=3, widths=(2, 4, 1), device="cpu")
    assert p.theta0.device.type == "cpu" and p.hessian(p.theta0).device.type == "cpu"
    from invfem.experiment.config import check_device
    with pytest.raises(ConfigError, match="not a torch device"):
        check_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            check_device("cuda")


# ---------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------

@cuda
@pytest.mark.parametrize("make", [poisson_fem.make_problem, poisson_nonlinear_fem.make_problem])
def test_gpu_hessian_equals_cpu_hessian(make):
    widths = (2, 8, 8, 1) if make is poisson_fem.make_problem else (1, 8, 8, 1)
    cpu = make(n=4, widths=widths)
    gpu = make(n=4, widths=widths, device="cuda")
    assert gpu.theta0.is_cuda
    h_cpu, h_gpu = cpu.hessian(cpu.theta0), gpu.hessian(gpu.theta0)
    assert h_gpu.is_cuda
    assert float(torch.linalg.norm(h_gpu.cpu() - h_cpu) / torch.linalg.norm(h_cpu)) < 1e-10
    assert symmetry_error(h_gpu.cpu()) < 1e-12
    torch.testing.assert_close(hessian(gpu.loss, gpu.theta0).cpu(), h_cpu, rtol=1e-9, atol=1e-12)


@cuda
def test_structured_hessian_operator_on_the_gpu_equals_the_cpu_one():
    """Issue 21: the closed-form Hessian-vector products (the Krylov methods' and the low-rank
    eigensolver's) stay on the GPU and equal the CPU ones."""
    from invfem.structured import hessian_path

    cpu = poisson_fem.make_problem(n=4, widths=(2, 8, 8, 1))
    gpu = poisson_fem.make_problem(n=4, widths=(2, 8, 8, 1), device="cuda")
    block = torch.randn(cpu.n_params, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = hessian_path(gpu).operator(gpu.theta0)(block.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), cpu.hessian(cpu.theta0) @ block, rtol=1e-10, atol=1e-12)


@cuda
def test_trust_exact_runs_on_the_gpu():
    p = poisson_fem.make_problem(n=4, widths=(2, 8, 8, 1), device="cuda")
    res = minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian, options={"maxiter": 5})
    ref_p = poisson_fem.make_problem(n=4, widths=(2, 8, 8, 1))
    ref = minimize(ref_p.loss, ref_p.theta0, method="trust-exact", hess=ref_p.hessian, options={"maxiter": 5})
    assert res.x.is_cuda and res.nit == ref.nit
    torch.testing.assert_close(res.x.cpu(), ref.x, rtol=1e-8, atol=1e-10)


def test_trust_exact_never_turns_a_tensor_into_numpy_implicitly(monkeypatch):
    """On a GPU an implicit tensor -> numpy conversion (np.linalg.norm of a step, say) raises;
    on the host it silently works. Forbid it here so the GPU path is checked without a GPU."""
    def implicit(self, dtype=None, copy=None):
        raise TypeError("implicit tensor -> numpy conversion (fails for a CUDA tensor)")

    p = poisson_fem.make_problem(n=4, widths=(2, 8, 8, 1))
    ref = minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian, options={"maxiter": 5})
    monkeypatch.setattr(torch.Tensor, "__array__", implicit)
    res = minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian, options={"maxiter": 5})
    assert res.nit == ref.nit == 5
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=0)

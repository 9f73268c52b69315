import pytest
import scipy.sparse
import torch
from torch import nn

from invfem.errors import ConfigError, ShapeError
from invfem.nn import MLP


def test_reference_network_has_921_parameters():
    assert MLP([2, 20, 20, 20, 1]).n_params == 921


def test_initialisation_is_deterministic_and_seed_dependent():
    mlp = MLP([2, 20, 20, 20, 1])
    torch.testing.assert_close(mlp.init(3), mlp.init(3))
    assert (mlp.init(3) - mlp.init(4)).abs().max() > 0.1


def test_flat_parameters_match_the_module():
    mlp = MLP([2, 7, 5, 1], shift=0.5)
    module = nn.Sequential(nn.Linear(2, 7), nn.Tanh(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    theta = mlp.flatten(module)
    x = torch.rand(11, 2)
    torch.testing.assert_close(mlp(theta, x), module(x).squeeze(-1) + 0.5)
    torch.testing.assert_close(mlp.flatten(mlp.unflatten(theta)), theta)


def test_positivity_transforms():
    x = torch.rand(50, 2)
    theta = MLP([2, 4, 1]).init(0) * 10
    for name in ("softplus", "exp", "square"):
        assert (MLP([2, 4, 1], positivity=name)(theta, x) >= 0).all()


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="activation"):
        MLP([2, 3, 1], activation="relu6")
    with pytest.raises(ConfigError, match="positivity"):
        MLP([2, 3, 1], positivity="abs")
    mlp = MLP([2, 3, 1])
    with pytest.raises(ShapeError, match="theta"):
        mlp(torch.zeros(5), torch.zeros(4, 2))
    with pytest.raises(ShapeError, match="input"):
        mlp(mlp.init(0), torch.zeros(4, 3))


ARCHITECTURES = [
    ([2, 5, 4, 3, 1], "tanh", None),
    ([2, 5, 4, 3, 1], "tanh", "softplus"),
    ([2, 6, 6, 1], "sigmoid", "exp"),
    ([1, 4, 3, 1], "gelu", "square"),
    ([3, 4, 1], "softplus", None),
    ([2, 1], "tanh", "exp"),                 # no hidden layer
]


def _blocks(mlp):
    """(name, slice) of every weight and bias block in the flat layout."""
    out, pos = [], 0
    for i, (a, b) in enumerate(zip(mlp.widths[:-1], mlp.widths[1:])):
        out += [(f"W{i + 1}", slice(pos, pos + a * b)), (f"b{i + 1}", slice(pos + a * b, pos + a * b + b))]
        pos += a * b + b
    return out


@pytest.mark.parametrize("widths,activation,positivity", ARCHITECTURES)
def test_closed_form_jacobian_and_every_hessian_block_match_torch_func(widths, activation, positivity):
    from invfem.nn.hessian import network_terms

    mlp = MLP(widths, activation=activation, positivity=positivity, shift=0.5)
    theta = mlp.init(1) * 1.5 + 0.1 * torch.randn(mlp.n_params)
    x, g, w = torch.rand(37, widths[0]), torch.randn(37), torch.rand(37)
    torch.use_deterministic_algorithms(True)       # fills torch.empty with NaN: every entry must be written
    try:
        terms = network_terms(mlp, theta, x, g, w, chunk=10)      # several chunks, one partial
    finally:
        torch.use_deterministic_algorithms(False)
    jac = torch.func.jacrev(lambda t: mlp(t, x))(theta)
    assert (terms.jac - jac).abs().max() < 1e-12 * max(1.0, float(jac.abs().max()))
    torch.testing.assert_close(terms.kappa, mlp(theta, x), rtol=1e-14, atol=1e-14)
    ref = torch.func.hessian(lambda t: (g * mlp(t, x)).sum())(theta) + jac.T @ (w[:, None] * jac)
    scale = float(ref.abs().max())
    for name_r, rows in _blocks(mlp):
        for name_c, cols in _blocks(mlp):
            err = float((terms.hessian[rows, cols] - ref[rows, cols]).abs().max())
            assert err < 1e-12 * scale, f"block ({name_r}, {name_c}): {err:.2e}"
    assert float((terms.hessian - terms.hessian.T).abs().max()) == 0.0


@pytest.mark.parametrize("widths,activation,positivity", ARCHITECTURES[:4])
def test_input_derivatives_match_torch_func(widths, activation, positivity):
    """kappa(theta, x): kappa_x, the mixed d/dx of the weighted gradient and the x-x curvature."""
    from invfem.nn.hessian import network_terms

    mlp = MLP(widths, activation=activation, positivity=positivity, shift=0.5)
    theta = mlp.init(2) + 0.1 * torch.randn(mlp.n_params)
    x, g, w = torch.rand(23, widths[0]), torch.randn(23), torch.rand(23)
    terms = network_terms(mlp, theta, x, g, w, input_derivatives=True, chunk=8)
    k0 = mlp(theta, x)

    def point_loss(t, xq, gq, wq, k0q):     # g kappa + w/2 (kappa - kappa0)^2: gradient g J, curvature g H + w J J^T
        k = mlp(t, xq[None])[0]
        return gq * k + 0.5 * wq * (k - k0q) ** 2

    kx = torch.func.vmap(torch.func.jacrev(lambda xq: mlp(theta, xq[None])[0]))(x)
    mixed = torch.func.vmap(torch.func.jacfwd(torch.func.grad(point_loss, 0), 1), in_dims=(None, 0, 0, 0, 0))(
        theta, x, g, w, k0)
    xx = torch.func.vmap(torch.func.hessian(point_loss, 1), in_dims=(None, 0, 0, 0, 0))(theta, x, g, w, k0)
    torch.testing.assert_close(terms.kappa_x, kx, rtol=1e-12, atol=1e-12)
    assert (terms.mixed - mixed).abs().max() < 1e-12 * mixed.abs().max()
    assert (terms.input_hessian - xx).abs().max() < 1e-12 * xx.abs().max()


def test_streamed_jacobian_equals_stored():
    from invfem.nn.hessian import network_terms

    mlp = MLP([2, 6, 5, 1])
    theta, x = mlp.init(0), torch.rand(29, 2)
    stored = network_terms(mlp, theta, x, torch.ones(29), chunk=7)
    seen = torch.zeros(29, mlp.n_params)

    def on_chunk(sl, rows, mixed):
        assert mixed is None and rows.shape == (sl.stop - sl.start, mlp.n_params)
        seen[sl] = rows

    streamed = network_terms(mlp, theta, x, torch.ones(29), chunk=7, on_chunk=on_chunk, store=False)
    assert streamed.jac is None
    torch.testing.assert_close(seen, stored.jac, rtol=0, atol=0)
    torch.testing.assert_close(streamed.hessian, stored.hessian, rtol=0, atol=0)


def test_softplus_derivatives_follow_torch_above_its_threshold():
    """torch's softplus is the identity above 20: its derivatives there are 1 and 0."""
    from invfem.nn.mlp import ACTIVATIONS

    z = torch.tensor([-3.0, 0.5, 19.0, 21.0, 40.0])
    d1, d2 = ACTIVATIONS["softplus"].derivatives(z)
    ref1 = torch.func.vmap(torch.func.grad(torch.nn.functional.softplus))(z)
    ref2 = torch.func.vmap(torch.func.grad(torch.func.grad(torch.nn.functional.softplus)))(z)
    torch.testing.assert_close(d1, ref1, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(d2, ref2, rtol=1e-14, atol=1e-15)


def test_closed_form_refuses_multi_output_networks():
    from invfem.nn.hessian import network_terms, supports_fast_hessian

    mlp = MLP([2, 3, 2])
    assert not supports_fast_hessian(mlp) and supports_fast_hessian(MLP([2, 3, 1], activation="sigmoid"))
    with pytest.raises(NotImplementedError, match="one output"):
        network_terms(mlp, mlp.init(0), torch.rand(4, 2), torch.ones(4))


@pytest.mark.parametrize("activation,omega,output_bias", [("tanh", 1.0, False), ("sin", 2.0, True),
                                                          ("sin", 1.0, False)])
def test_sin_activation_and_no_output_bias_in_closed_form(activation, omega, output_bias):
    """SIREN's sin(omega z) and reference 002's output layer without bias: J, the weighted
    Hessian, the input derivatives and the streamed J against torch.func."""
    from invfem.nn.hessian import network_terms

    mlp = MLP([2, 5, 4, 1], activation=activation, omega=omega, output_bias=output_bias)
    assert mlp.n_params == 15 + 24 + 4 + (1 if output_bias else 0)
    theta = mlp.init(3) + 0.2 * torch.randn(mlp.n_params)
    x, g, w = torch.rand(31, 2), torch.randn(31), torch.rand(31)
    terms = network_terms(mlp, theta, x, g, w, input_derivatives=True, chunk=9)
    jac = torch.func.jacrev(lambda t: mlp(t, x))(theta)
    torch.testing.assert_close(terms.jac, jac, rtol=1e-12, atol=1e-13)
    ref = torch.func.hessian(lambda t: (g * mlp(t, x)).sum())(theta) + jac.T @ (w[:, None] * jac)
    assert float((terms.hessian - ref).abs().max()) < 1e-12 * float(ref.abs().max())
    assert float((terms.hessian - terms.hessian.T).abs().max()) == 0.0
    kx = torch.func.vmap(torch.func.jacrev(lambda xq: mlp(theta, xq[None])[0]))(x)
    torch.testing.assert_close(terms.kappa_x, kx, rtol=1e-12, atol=1e-12)
    assert terms.mixed.shape == (31, mlp.n_params, 2)
    seen = torch.zeros(31, mlp.n_params)

    def on_chunk(sl, rows, mixed):
        seen[sl] = rows

    streamed = network_terms(mlp, theta, x, g, w, chunk=9, on_chunk=on_chunk, store=False)
    torch.testing.assert_close(seen, terms.jac, rtol=0, atol=0)
    torch.testing.assert_close(streamed.hessian, terms.hessian, rtol=0, atol=0)


@pytest.mark.parametrize("widths,activation,positivity", ARCHITECTURES)
@pytest.mark.parametrize("output_bias", [True, False])
def test_factored_jacobian_times_a_sparse_matrix_matches_torch_func(widths, activation, positivity, output_bias):
    """NetworkJacobian.left_multiply(M) == M @ J for a sparse M, J from torch.func (every layer
    shape: stacked over rows of W where n <= k, over columns where n > k; no output bias)."""
    from invfem.linalg.pattern import csr_tensor
    from invfem.nn.hessian import NetworkJacobian

    mlp = MLP(widths, activation=activation, positivity=positivity, shift=0.5, output_bias=output_bias)
    theta = mlp.init(3) + 0.1 * torch.randn(mlp.n_params, generator=torch.Generator().manual_seed(4))
    x = torch.rand(31, widths[0], generator=torch.Generator().manual_seed(5))
    dense = torch.randn(9, 31, generator=torch.Generator().manual_seed(6))
    dense[dense.abs() < 0.8] = 0.0                   # about 40 % nonzero, one row empty
    dense[4] = 0.0
    m = scipy.sparse.csr_matrix(dense.numpy())
    matrix = csr_tensor(torch.as_tensor(m.indptr, dtype=torch.int64), torch.as_tensor(m.indices, dtype=torch.int64),
                        torch.as_tensor(m.data), m.shape)
    network = NetworkJacobian(mlp, theta, x)
    jac = torch.func.jacrev(lambda t: mlp(t, x))(theta)
    torch.testing.assert_close(network.kappa, mlp(theta, x), rtol=1e-14, atol=1e-14)
    reference = dense @ jac
    got = network.left_multiply(matrix)
    assert got.shape == (9, mlp.n_params)
    assert float((got - reference).abs().max()) < 1e-12 * float(reference.abs().max())
    with pytest.raises(ShapeError, match="sparse CSR with 31 columns"):
        network.left_multiply(dense)

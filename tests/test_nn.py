import pytest
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


@pytest.mark.parametrize("positivity", [None, "softplus", "exp", "square"])
def test_fast_jacobian_and_weighted_hessian_match_torch_func(positivity):
    from invfem.nn.hessian import mlp_jacobian_and_hessian

    mlp = MLP([2, 5, 4, 3, 1], positivity=positivity, shift=0.5)
    theta = mlp.init(1) * 1.5
    x, g = torch.rand(37, 2), torch.randn(37)
    jac, hess = mlp_jacobian_and_hessian(mlp, theta, x, g, chunk=10)
    torch.testing.assert_close(jac, torch.func.jacrev(lambda t: mlp(t, x))(theta), rtol=1e-12, atol=1e-12)
    ref = torch.func.hessian(lambda t: (g * mlp(t, x)).sum())(theta)
    assert (hess - ref).abs().max() < 1e-12 * ref.abs().max()


def test_fast_hessian_refuses_unsupported_networks():
    from invfem.nn.hessian import mlp_jacobian_and_hessian, supports_fast_hessian

    mlp = MLP([2, 3, 1], activation="sigmoid")
    assert not supports_fast_hessian(mlp)
    with pytest.raises(NotImplementedError, match="tanh"):
        mlp_jacobian_and_hessian(mlp, mlp.init(0), torch.rand(4, 2), torch.ones(4))

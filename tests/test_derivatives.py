import pytest
import torch

from invfem.derivatives import hessian, hvp, symmetry_error, taylor_test, value_and_grad


def rosen(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def test_grad_hvp_hessian_of_rosenbrock_match_torch_autograd():
    x = torch.tensor([-1.2, 1.0, 0.3, 0.7])
    f, g = value_and_grad(rosen, x)
    ref = torch.autograd.functional.hessian(rosen, x)
    torch.testing.assert_close(hessian(rosen, x), ref)
    torch.testing.assert_close(hessian(rosen, x, chunk_size=3), ref)
    v = torch.arange(4.0)
    torch.testing.assert_close(hvp(rosen, x, v), ref @ v)
    torch.testing.assert_close(g, torch.func.grad(rosen)(x))
    assert symmetry_error(ref) < 1e-15


def test_taylor_rates_of_a_smooth_function(gen):
    x = torch.randn(6, generator=gen)
    result = taylor_test(lambda z: torch.exp(z).sum() * torch.sin(z).sum(), x, torch.randn(6, generator=gen))
    assert result.passed(), result.rates
    assert result.remainders.shape == (3, 5)


def test_taylor_test_fails_for_a_wrong_hessian(gen):
    class BadCube(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x ** 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x.detach() ** 2 * g  # detached: second derivative lost

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 3 * x.detach() ** 2 * t

    x = torch.randn(4, generator=gen)
    result = taylor_test(lambda z: BadCube.apply(z).sum(), x, torch.randn(4, generator=gen))
    assert result.min_rates[1] > 1.9 and result.min_rates[2] < 2.5


def test_symmetry_error_sees_asymmetry():
    assert symmetry_error(torch.tensor([[1.0, 2.0], [0.0, 1.0]])) > 0.5
    assert symmetry_error(torch.zeros(2, 2)) == 0.0


def test_value_and_grad_plain_and_inside_transforms():
    x = torch.tensor([-1.2, 1.0, 0.3, 0.7])
    f, g = value_and_grad(rosen, x)
    assert not g.requires_grad and not f.requires_grad
    torch.testing.assert_close(g, torch.func.grad(rosen)(x))
    # inside vmap / jacrev it composes (torch.func path): rows of the Hessian
    h_rows = torch.func.jacrev(lambda z: value_and_grad(rosen, z)[1])(x)
    torch.testing.assert_close(h_rows, torch.autograd.functional.hessian(rosen, x))
    batched = torch.func.vmap(lambda z: value_and_grad(rosen, z)[1])(torch.stack([x, 2 * x]))
    torch.testing.assert_close(batched[1], torch.func.grad(rosen)(2 * x))


@pytest.mark.parametrize("name, options", [
    ("poisson_fem", {"n": 4}),                       # sparse_solve's custom Function, differentiated twice
    ("poisson_nonlinear_fem", {"n": 4}),             # Newton's state through its chord steps
    ("heat_fem", {"n": 4, "n_steps": 3}),
    ("neural_ode", {"n_samples": 5}),
])
def test_hvp_reverse_over_reverse_equals_forward_over_reverse(name, options):
    """On plain tensors :func:`hvp` differentiates the gradient again with torch.autograd; it must
    equal the forward-over-reverse product (the path it takes inside transforms) and the Hessian."""
    from invfem.experiment import load_problem
    problem = load_problem(name, seed=0, **options)
    theta = problem.theta0
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fast = hvp(problem.loss, theta, v)
    assert not fast.requires_grad
    reference = torch.func.jvp(torch.func.grad(problem.loss), (theta,), (v,))[1]
    assert float((fast - reference).norm() / reference.norm()) < 1e-12
    assert float((fast - hessian(problem.loss, theta) @ v).norm() / reference.norm()) < 1e-12


def test_hvp_of_a_function_linear_in_theta_is_zero():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    zero = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(hvp(lambda t: t.sum(), x, torch.ones(2, dtype=torch.float64)), zero)


def test_hvp_never_returns_zeros_for_a_backward_that_is_not_differentiable():
    """A custom Function whose backward runs outside autograd (numpy) gives a gradient without a
    graph: hvp must not mistake that for a linear function and return zeros."""

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x ** 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            return torch.from_numpy(3 * x.detach().numpy() ** 2) * grad_out.detach()

        @staticmethod
        def jvp(ctx, x_dot):
            return None

    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="not differentiable by autograd"):   # an error, not a silent zero
        hvp(lambda t: Cube.apply(t).sum(), x, torch.ones(2, dtype=torch.float64))

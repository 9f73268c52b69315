"""Reference 003's neural ODE: learn the right-hand side of u' = ((u^3)^T A)^T from 30 samples.

True dynamics ``u' = ((u^3)^T A)^T`` with ``A = [[-0.1, 2], [-2, -0.1]]``, ``u(0) = (2, 0)``,
sampled at 30 times on [0, 1.5]. The model ``u' = N_theta(u^3)`` has a 2 -> 50 tanh -> 2
network (252 parameters). ``u_theta`` comes from a fixed-step classical Runge–Kutta (RK4)
scheme written in torch operations. The loss, its gradient, HVPs and full Hessians
therefore come out of ``torch.func`` exactly, to second order.

    L(theta) = mean over samples and components of (u_theta(t_i) - u_obs(t_i))^2

The data come from the same RK4 scheme with ``data_substeps`` steps per sample interval,
the model with ``substeps`` (2 by default). The network has two outputs, so the closed-form
structured Hessian does not apply: :func:`invfem.structured.hessian_path` picks the generic
batched Hessian.
"""

from __future__ import annotations

import torch

from invfem.errors import ConfigError
from invfem.nn import MLP
from invfem.problem import Problem

A_TRUE = ((-0.1, 2.0), (-2.0, -0.1))


def rk4(rhs, u0: torch.Tensor, times: torch.Tensor, substeps: int) -> torch.Tensor:
    """The classical RK4 solution of ``u' = rhs(u)`` at ``times`` (``(T,)``; ``times[0]`` is the
    start), ``substeps`` equal steps per interval: ``(T, dim)``."""
    states, u = [u0], u0
    for k in range(times.shape[0] - 1):
        h = (times[k + 1] - times[k]) / substeps
        for _ in range(substeps):
            k1 = rhs(u)
            k2 = rhs(u + 0.5 * h * k1)
            k3 = rhs(u + 0.5 * h * k2)
            k4 = rhs(u + h * k3)
            u = u + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        states.append(u)
    return torch.stack(states)


def make_problem(seed: int = 0, *, n_samples: int = 30, t_end: float = 1.5, substeps: int = 2, hidden: int = 50,
                 data_substeps: int = 20, device=None) -> Problem:
    """The neural-ODE fit of reference 003; ``seed`` initialises the network."""
    for name, value, low in (("n_samples", n_samples, 2), ("substeps", substeps, 1), ("hidden", hidden, 1),
                             ("data_substeps", data_substeps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not t_end > 0:
        raise ConfigError(f"t_end must be > 0, got {t_end!r}")
    a = torch.tensor(A_TRUE, dtype=torch.float64, device=device)
    times = torch.linspace(0.0, float(t_end), n_samples, dtype=torch.float64, device=device)
    u0 = torch.tensor([2.0, 0.0], dtype=torch.float64, device=device)
    with torch.no_grad():
        observed = rk4(lambda u: (u ** 3) @ a, u0, times, data_substeps)
    mlp = MLP([2, hidden, 2])

    def trajectory(theta):
        # The network's layers are sliced out of theta once, not at each of the RK4 stages.
        (w1, b1), (w2, b2) = mlp.layers(theta)
        w1t, w2t = w1.T, w2.T
        return rk4(lambda u: torch.tanh((u ** 3) @ w1t + b1) @ w2t + b2, u0, times, substeps)

    def loss(theta):
        return torch.mean((trajectory(theta) - observed) ** 2)

    def residual(theta):                # loss = ||residual||^2: the mean over samples and components
        return (trajectory(theta) - observed).reshape(-1) / observed.numel() ** 0.5

    # no solve in the loss: the Jacobian of RK4 in torch by reverse mode (60 residuals < 252 parameters)
    return Problem(name="neural_ode", theta0=mlp.init(seed, device=device), loss=loss, residual=residual,
                   jacobian=torch.func.jacrev(residual),
                   kappa=lambda theta, u: mlp(theta, u ** 3),
                   kappa_true=lambda u: (u ** 3) @ a,
                   info={"times": times, "observed": observed, "trajectory": trajectory, "mlp": mlp,
                         "kappa_input": "u"})

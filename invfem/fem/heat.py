"""Heat equation u_t = div(kappa(x) grad u) + f with u = 0 on the boundary, by the theta-scheme.

    M (u^{k+1} - u^k) / dt + K(kappa) (s u^{k+1} + (1 - s) u^k) = s F^{k+1} + (1 - s) F^k,

s = 1 (backward Euler, order 1) or s = 1/2 (Crank–Nicolson, order 2).  The step matrix
A = M + s dt K(kappa) is the same at every step, so every solve of a trajectory — forward,
adjoint, and each Hessian-vector product — reuses ONE cached factorization (the solver's
cache is keyed by the content of A's values).  The same operators give the residual of
observed snapshots for residual-minimisation training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from invfem.derivatives import value_and_grad
from invfem.errors import ConfigError, ShapeError
from invfem.fem.operators import DirichletSystem, load_vector, mass_map, stiffness_map
from invfem.fem.residual import LinearResidualLoss
from invfem.fem.space import FunctionSpace
from invfem.linalg import sparse_solve
from invfem.linalg.dense import symmetric_product
from invfem.misfit import ObservationMisfit, apply_hessian
from invfem.structured import Linearization

SCHEMES = {"backward-euler": 1.0, "crank-nicolson": 0.5}


class HeatStepper:
    """theta-scheme time stepping on a P1/P2 space, homogeneous Dirichlet boundary.

    ``f``: None (zero), a number, or a callable ``f(x, y, t)`` on coordinate tensors.
    """

    def __init__(self, space: FunctionSpace, dt: float, n_steps: int, scheme: str = "backward-euler", f=None,
                 backend="auto", u_dirichlet: torch.Tensor | None = None):
        if scheme not in SCHEMES:
            raise ConfigError(f"unknown scheme {scheme!r}; valid: {sorted(SCHEMES)}")
        if not dt > 0:
            raise ConfigError(f"dt must be positive, got {dt!r}")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ConfigError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.space, self.dt, self.n_steps, self.scheme = space, float(dt), n_steps, scheme
        self.s = SCHEMES[scheme]
        self.stiffness = stiffness_map(space)
        mass = mass_map(space)
        if not torch.equal(torch.as_tensor(mass.pattern.indices), torch.as_tensor(self.stiffness.pattern.indices)):
            raise AssertionError("mass and stiffness patterns differ")
        self.mass_values = mass.values(torch.ones(space.n_quad, dtype=torch.float64, device=space.device))
        self.system = DirichletSystem.build(space, self.stiffness.pattern, backend=backend)
        self.times = torch.arange(n_steps + 1, dtype=torch.float64) * self.dt
        self.loads = self._loads(f)                                  # (n_steps + 1, n_free)
        self.u_dirichlet = u_dirichlet                               # values on the Dirichlet dofs (None: 0)

    def _loads(self, f):
        free = self.space.free_index
        if f is None:
            return torch.zeros(self.n_steps + 1, self.space.n_free, dtype=torch.float64, device=self.space.device)
        if not callable(f):
            value = float(f)
            load = load_vector(self.space, lambda x, y: value * torch.ones_like(x))[free]
            return load.expand(self.n_steps + 1, -1).clone()
        return torch.stack([load_vector(self.space, lambda x, y, t=t: f(x, y, t) + 0 * x)[free]
                            for t in self.times.tolist()])

    def trajectory(self, kappa_q: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
        """All states ``(n_steps + 1, n_dofs)`` from ``u0`` (all dofs); differentiable in kappa_q and u0.

        With ``u_dirichlet``, every state (``u0`` included) takes those values on the Dirichlet dofs.
        """
        self.space._check_nodal(u0)
        k_values = self.stiffness.values(kappa_q)
        a_full = self.mass_values + self.s * self.dt * k_values
        a_values = self.system.condense_matrix(a_full)
        b_values = self.mass_values - (1 - self.s) * self.dt * k_values
        pattern, free, u_d = self.stiffness.pattern, self.space.free_index, self.u_dirichlet
        lift = 0.0 if u_d is None else self.system.condense_rhs(a_full, torch.zeros_like(u0), u_d)   # -A_fD u_D
        states = [u0 if u_d is None else u0.index_copy(0, self.space.dirichlet_index, u_d)]
        for k in range(self.n_steps):
            rhs = pattern.matvec(b_values, states[-1])[free] + self.dt * (
                self.s * self.loads[k + 1] + (1 - self.s) * self.loads[k]) + lift
            states.append(self.space.expand(sparse_solve(a_values, rhs, self.system.solver), u_d))
        return torch.stack(states)

    def residual_loss(self, snapshots: torch.Tensor) -> LinearResidualLoss:
        """``kappa -> sum_k ||r_k||^2`` over consecutive snapshot pairs ``(n_steps + 1, n_dofs)``:

        ``r_k = M (u^{k+1} - u^k) / dt + K(kappa) (s u^{k+1} + (1 - s) u^k) - (s F^{k+1} + (1 - s) F^k)``
        on the free rows — affine in kappa (a :class:`~invfem.fem.residual.LinearResidualLoss`).
        """
        if snapshots.shape != (self.n_steps + 1, self.space.n_dofs):
            raise ShapeError(f"snapshots must have shape ({self.n_steps + 1}, {self.space.n_dofs}) (one state per "
                             f"time step, t = 0 .. {self.n_steps} dt), got {tuple(snapshots.shape)}")
        pattern, free = self.stiffness.pattern, self.space.free_index
        mu = pattern.matvec(self.mass_values, snapshots.T).T[:, free]
        targets = (self.s * self.loads[1:] + (1 - self.s) * self.loads[:-1]) - (mu[1:] - mu[:-1]) / self.dt
        vectors = self.s * snapshots[1:] + (1 - self.s) * snapshots[:-1]
        return LinearResidualLoss(self.stiffness, vectors, targets, free)

    def residuals(self, kappa_q: torch.Tensor, snapshots: torch.Tensor) -> torch.Tensor:
        """Scheme residuals ``(n_steps, n_free)`` of consecutive snapshots ``(n_steps + 1, n_dofs)``."""
        return self.residual_loss(snapshots).residuals(kappa_q)


def check_snapshot_times(times, dt: float, n_steps: int, every_step: bool) -> torch.Tensor:
    """Indices of observation ``times`` on the step grid k dt (k = 0..n_steps); ConfigError otherwise.

    ``every_step``: the times must be exactly 0, dt, ..., n_steps dt (residual minimisation).
    """
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    if times.numel() == 0:
        raise ConfigError("no snapshot times given")
    k = torch.round(times / dt)
    off = (times - k * dt).abs() > 1e-9 * max(dt, 1.0)
    if off.any():
        i = int(torch.nonzero(off)[0])
        raise ConfigError(f"snapshot time {float(times[i])} is not on the step grid k*dt (dt = {dt})")
    if (k < 0).any() or (k > n_steps).any():
        raise ConfigError(f"snapshot times must lie in [0, {n_steps * dt}], got [{float(times.min())}, "
                          f"{float(times.max())}]")
    if (k[1:] <= k[:-1]).any():
        raise ConfigError("snapshot times must be strictly increasing")
    if every_step and not torch.equal(k, torch.arange(n_steps + 1, dtype=torch.float64)):
        raise ConfigError(f"residual minimisation needs a snapshot at every step t = k*dt, k = 0..{n_steps}; "
                          f"got {times.numel()} times")
    return k.long()


@dataclass(eq=False)
class TrajectoryLoss:
    """``kappa -> misfit(states)`` with ``states = stepper.trajectory(kappa, u0)`` ``(n_steps + 1, n_dofs)``.

    :meth:`linearize` gives the structured Hessian's pieces (Lagrangian of the time-stepping
    equations ``R_k = A u^{k+1} - B u^k - f_k``, ``A = M + s dt K(kappa)``, ``B = M - (1-s) dt K(kappa)``):
    the adjoint trajectory ``A^T lambda_{k-1} = dm/du^k + B^T lambda_k`` (backwards), the gradient
    ``g_q = -dt sum_k lambda_k^T K_q (s u^{k+1} + (1-s) u^k)``, and ``J^T W J`` from the
    sensitivity trajectory ``A S^{k+1} = B S^k - dt C(u^hat_k) J`` — ``n_steps`` solves with ``P``
    right-hand sides, all on the ONE factorization of ``A`` — as ``sum_k S^k^T Y^k + Y^k^T S^k``
    with ``Y^k = (1/2) (Hess m) S^k - dt C(lambda^hat_k)^T J``.
    """

    stepper: HeatStepper
    u0: torch.Tensor
    misfit: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, kappa: torch.Tensor) -> torch.Tensor:
        return self.misfit(self.stepper.trajectory(kappa, self.u0))

    def linearize(self, kappa: torch.Tensor) -> Linearization:
        st = self.stepper
        space, pattern, solver = st.space, st.stiffness.pattern, st.system.solver
        free, n_steps, s, dt = space.free_index, st.n_steps, st.s, st.dt
        a_ff, b_ff, b_values, states, coef_u = self._system(kappa)
        m_states = value_and_grad(self.misfit, states)[1]
        lam = states.new_zeros(n_steps + 1, space.n_dofs)           # lambda_k, k = 0..n_steps-1; lambda_n = 0
        rhs = m_states[n_steps][free]
        for k in range(n_steps - 1, -1, -1):
            lam[k] = space.expand(sparse_solve(a_ff, rhs, solver, transpose=True))
            if k > 0:
                rhs = m_states[k][free] + pattern.matvec(b_values, lam[k], transpose=True)[free]
        n_loc = space.element_dofs.shape[0]
        per_step = coef_u.view(coef_u.shape[0], n_steps, n_loc, -1)
        gradient = -dt * torch.einsum("kae,ekaq->eq", lam[:n_steps][:, space.element_dofs], per_step).reshape(-1)
        lam_hat = s * lam[:n_steps] + (1 - s) * lam[1:]                  # lambda^hat_j, j = 1..n (row j - 1)
        coef_lam = st.stiffness.coupling(lam_hat, transpose=True)
        rows, n_free = space.free_rows, space.n_free

        def curvature(jac: torch.Tensor) -> torch.Tensor:
            # Free-row numbering (free dofs first, Dirichlet dofs onto a zero dump row): S^k and
            # Y^k stacked as (n_steps, n_free + 1, P), so the final product needs no index copies.
            n_params = jac.shape[1]
            sens = self._sensitivities(a_ff, b_ff, coef_u, jac)
            y = space.scatter_points(coef_lam, jac, dof_rows=rows).mul_(-dt)     # -dt C(lambda^hat_j)^T J
            self._add_half_hessian(y, states, sens)
            y[:, n_free] = 0.0
            return symmetric_product(sens.view(-1, n_params), y.view(-1, n_params))

        return Linearization(gradient=gradient, curvature=curvature)

    def _system(self, kappa: torch.Tensor):
        """``(a_ff, b_ff, b_values, states, coef_u)``: the step matrices (A's free block values, B's
        free block as CSR, B's full values), the trajectory and ``C(u^hat_k)`` of every step, at ``kappa``."""
        st = self.stepper
        s, dt = st.s, st.dt
        with torch.no_grad():
            k_values = st.stiffness.values(kappa)
            a_ff = st.system.condense_matrix(st.mass_values + s * dt * k_values)
            b_values = st.mass_values - (1 - s) * dt * k_values
            states = st.trajectory(kappa, self.u0)
        coef_u = st.stiffness.coupling(s * states[1:] + (1 - s) * states[:-1])      # C(u^hat_k), k = 0..n-1
        return a_ff, st.system.pattern.csr(st.system.condense_matrix(b_values)), b_values, states, coef_u

    def _sensitivities(self, a_ff, b_ff, coef_u, jac: torch.Tensor) -> torch.Tensor:
        """The sensitivity trajectory ``A S^{k+1} = B S^k - dt C(u^hat_k) J`` (``S^0 = 0``: u0 is data),
        ``(n_steps, n_free + 1, P)`` in free-row numbering (row n_free: a zero dump row), S^k in
        row k - 1: ``n_steps`` solves with ``P`` right-hand sides on ONE factorization."""
        st = self.stepper
        space, n_free = st.space, st.space.n_free
        sens = space.scatter_points(coef_u, jac, dof_rows=space.free_rows).mul_(-st.dt)
        for k in range(st.n_steps):
            rhs = sens[k, :n_free]
            if k > 0:
                rhs.addmm_(b_ff, sens[k - 1, :n_free])
            sens[k, :n_free] = sparse_solve(a_ff, rhs, st.system.solver)
        sens[:, n_free] = 0.0
        return sens

    def _state_rows(self, n_rows: int, dump: int, device) -> torch.Tensor:
        """Flat state index ``k n_dofs + dof`` -> row ``(k - 1) n_rows + free_rows[dof]`` of a stacked
        free-row layout; step 0 (data) onto ``dump``."""
        space, n_steps = self.stepper.space, self.stepper.n_steps
        step = torch.arange(n_steps + 1, device=device)[:, None]
        return torch.where(step > 0, (step - 1) * n_rows + space.free_rows[None, :], dump).reshape(-1)

    @property
    def has_residual(self) -> bool:
        """Whether the misfit is a sum of squares of observations (an ObservationMisfit)."""
        return isinstance(self.misfit, ObservationMisfit)

    def residual_vector(self, kappa: torch.Tensor) -> torch.Tensor:
        """``w^1/2 (B states - d)``: the loss is its squared norm."""
        return self.misfit.weighted_residual(self.stepper.trajectory(kappa, self.u0))

    def residual_jacobian(self, kappa: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        """``w^1/2 B S`` over the sensitivity trajectory (:meth:`_sensitivities`)."""
        a_ff, b_ff, _, _, coef_u = self._system(kappa)
        sens = self._sensitivities(a_ff, b_ff, coef_u, jac)
        flat = sens.view(-1, sens.shape[-1])
        return self.misfit.residual_jacobian(flat, self._state_rows(sens.shape[1], flat.shape[0], flat.device))

    def _add_half_hessian(self, y: torch.Tensor, states: torch.Tensor, sens: torch.Tensor) -> None:
        """``Y^k += (1/2) Hess misfit (states) S`` for the stacked free-row layout of ``curvature``."""
        space, n_steps = self.stepper.space, self.stepper.n_steps
        n_rows = space.n_free + 1
        if hasattr(self.misfit, "add_hessian_product"):
            self.misfit.add_hessian_product(y.view(-1, y.shape[-1]), sens.view(-1, y.shape[-1]),
                                            self._state_rows(n_rows, y.numel(), y.device), alpha=0.5)
            return
        full = sens.new_zeros(n_steps + 1, space.n_dofs, sens.shape[-1])
        full[1:, space.free_index] = sens[:, :-1]
        product = apply_hessian(self.misfit, states, full)
        y[:, :-1] += 0.5 * product[1:, space.free_index]

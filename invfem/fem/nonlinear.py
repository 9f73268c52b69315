"""Quasi-linear Poisson problem -div(kappa(u) grad u) = f, u = 0 on the boundary, by Newton's method,
with a solution map that is exact to second order in the coefficient's parameters.

Residual on the free dofs, R(u) = K(kappa(u_q)) u - F, with kappa evaluated at the quadrature
points from the interpolated u.  Its Jacobian is

    J(u) = K(kappa(u_q)) + G(u),   G_ab = sum_q kappa'(u_q) w_q phi_b(x_q) grad(phi_a).grad(u)(x_q),

assembled through the same :class:`~invfem.fem.operators.BilinearMap` slots as K.

Derivatives (implicit differentiation without a hand-written adjoint): Newton runs on plain
tensors to u0 = u*(theta0); then two chord steps u1 = u0 - J0^-1 R(u0), u2 = u1 - J0^-1 R(u1)
with J0 = J(u0; theta) are taken *with* theta live.  If u*(theta) is the exact solution,
u0 - u* = O(d), u1 - u* = O(d^2) and u2 - u* = O(d^3) for theta = theta0 + d, so u2 has the
exact first and second derivatives of u* at theta0 (one chord step gives only the first).
Both chord steps solve with the same matrix values: one factorization, cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from invfem.derivatives import value_and_grad
from invfem.errors import (ConvergenceError, NonFiniteError, NonPositiveCoefficientError, NoStateError,
                           SingularMatrixError)
from invfem.fem.operators import DirichletSystem, load_vector, state_sensitivity, stiffness_map
from invfem.fem.space import FunctionSpace
from invfem.linalg import SparseSolver, sparse_solve
from invfem.misfit import ObservationMisfit, add_hessian_on_free_rows
from invfem.nn.hessian import DEFAULT_CHUNK, NetworkJacobian, network_terms, supports_fast_hessian


def value_and_derivative(kappa, u_q: torch.Tensor):
    """(kappa(u_q), kappa'(u_q)) for a pointwise ``kappa`` acting on ``(n, 1)`` inputs."""
    def flat(z):
        return kappa(z[:, None]).reshape(-1)
    return torch.func.jvp(flat, (u_q,), (torch.ones_like(u_q),))


class NonlinearPoisson:
    """Newton solver and differentiable solution map for -div(kappa(u) grad u) = f.

    ``kappa_model(theta, u_points)`` maps parameters and ``(n, 1)`` values of u to kappa
    ``(n,)`` or ``(n, 1)`` (an :class:`~invfem.nn.MLP` with input width 1 does).  Newton stops
    when ||R|| <= atol + rtol ||R(u_start)||; it uses a backtracking line search on ||R||;
    after ``maxiter`` iterations, or on a non-finite residual, it raises ConvergenceError.
    """

    def __init__(self, space: FunctionSpace, f, backend="auto", rtol=1e-12, atol=1e-13, maxiter=30,
                 u_dirichlet: torch.Tensor | None = None):
        self.space = space
        self.u_dirichlet = u_dirichlet      # values on the Dirichlet dofs (None: 0)
        self.stiffness = stiffness_map(space)
        self.system = DirichletSystem.build(space, self.stiffness.pattern, backend=backend)
        self.load = load_vector(space, f)
        self.newton_solver = SparseSolver(self.system.pattern, backend, cache_size=1)
        self.rtol, self.atol, self.maxiter = rtol, atol, maxiter
        # grad(phi_a)_d phi_b w at every quadrature point, for the kappa'(u) term of J
        self._convection = torch.einsum("adeq,beq,eq->eabqd", space.grad_phi, space.phi, space.dx).contiguous()

    # -- residual and Jacobian ------------------------------------------------------------
    def residual(self, u: torch.Tensor, kappa_q: torch.Tensor) -> torch.Tensor:
        """R = K(kappa_q) u - F on the free dofs (u: all dofs, zero on the boundary)."""
        values = self.stiffness.values(kappa_q)
        ku = self.stiffness.pattern.matvec(values, u)
        return (ku - self.load)[self.space.free_index]

    def jacobian_values(self, u: torch.Tensor, kappa_q: torch.Tensor, dkappa_q: torch.Tensor) -> torch.Tensor:
        """CSR values of J(u) on the free-free pattern ``self.system.pattern``."""
        grad_u = self.space.interpolate_grad(u).reshape(self.space.n_elements, self.space.n_qp, 2)
        element = torch.einsum("eabqd,eqd,eq->eab", self._convection, grad_u,
                               dkappa_q.reshape(self.space.dx.shape))
        full = self.stiffness.values(kappa_q) + self.stiffness.assemble(element)
        return self.system.condense_matrix(full)

    def _state(self, kappa, u):
        kq, dkq = value_and_derivative(kappa, self.space.interpolate(u))
        return kq.reshape(-1), dkq.reshape(-1)

    # -- Newton ---------------------------------------------------------------------------
    def newton(self, kappa, u_start: torch.Tensor | None = None):
        """Solve for u (all dofs) with ``kappa`` a pointwise callable; returns (u, residual norms)."""
        with torch.no_grad():
            u = (self.space.expand(torch.zeros(self.space.n_free, dtype=torch.float64, device=self.space.device),
                                   self.u_dirichlet) if u_start is None else u_start.clone())
            kq, dkq = self._state(kappa, u)
            r = self.residual(u, kq)
            norms = [float(torch.linalg.norm(r))]
            target = self.atol + self.rtol * norms[0]
            for _ in range(self.maxiter):
                if not math.isfinite(norms[-1]):
                    raise ConvergenceError(f"Newton: non-finite residual after {len(norms) - 1} iterations")
                if norms[-1] <= target:
                    return u, norms
                du = self.space.expand(self.newton_solver.solve(self.jacobian_values(u, kq, dkq), -r))
                t = 1.0
                while True:   # backtracking on ||R|| (Armijo with c = 1e-4)
                    trial = u + t * du
                    kq_t, dkq_t = self._state(kappa, trial)
                    r_t = self.residual(trial, kq_t)
                    n_t = float(torch.linalg.norm(r_t))
                    if (math.isfinite(n_t) and n_t <= (1 - 1e-4 * t) * norms[-1]) or t < 1e-6:
                        break
                    t *= 0.5
                u, kq, dkq, r = trial, kq_t, dkq_t, r_t
                norms.append(n_t)
            if norms[-1] <= target:
                return u, norms
            raise ConvergenceError(f"Newton did not converge in {self.maxiter} iterations: ||R|| = {norms[-1]:.3e} "
                                   f"(target {target:.3e}, start {norms[0]:.3e})")

    def forget_state(self) -> None:
        """Drop the remembered Newton solution (benchmarks time a cold solve with it)."""
        self.__dict__.pop("_last_state", None)

    def state(self, kappa_model, theta: torch.Tensor) -> torch.Tensor:
        """u*(theta) by Newton from zero (no derivatives), remembered for the last theta: an
        optimizer asks for the loss, its gradient and its Hessian at the same point."""
        theta = theta.detach()
        key = (id(kappa_model), theta.shape, theta.device)
        last = self.__dict__.get("_last_state")
        if last is not None and last[0] == key and torch.equal(last[1], theta):
            return last[2]
        try:
            u, _ = self.newton(lambda z: kappa_model(theta, z))
        except (ConvergenceError, SingularMatrixError) as exc:
            raise NoStateError(f"no state for these parameters: {exc}") from exc
        if not bool(torch.isfinite(u).all()):
            raise NonFiniteError("Newton returned a non-finite solution")
        u_q = self.space.interpolate(u)
        kappa = kappa_model(theta, u_q[:, None]).reshape(-1)
        if bool(kappa.min() <= 0):
            q = int(kappa.argmin())
            raise NonPositiveCoefficientError(f"kappa <= 0: smallest value {float(kappa[q]):.4g} at u = {float(u_q[q]):.4g} "
                                              f"(x = ({float(self.space.quadrature_points[q, 0]):.4g}, "
                                              f"{float(self.space.quadrature_points[q, 1]):.4g})); the operator is "
                                              "not elliptic there")
        self.__dict__["_last_state"] = (key, theta.clone(), u)
        return u

    # -- differentiable solution map ------------------------------------------------------
    def solution(self, kappa_model, theta: torch.Tensor) -> torch.Tensor:
        """u*(theta) on all dofs, with exact first and second derivatives (see module docstring)."""
        u0 = _NewtonSolve.apply(self, kappa_model, theta)
        kappa = lambda z: kappa_model(theta, z)
        kq, dkq = self._state(kappa, u0)
        jac = self.jacobian_values(u0, kq, dkq)
        u1 = u0 - self.space.expand(sparse_solve(jac, self.residual(u0, kq), self.system.solver))
        kq1, _ = self._state(kappa, u1)
        return u1 - self.space.expand(sparse_solve(jac, self.residual(u1, kq1), self.system.solver))


class _NewtonSolve(torch.autograd.Function):
    """u*(theta) from Newton on plain tensors; the output carries no derivative (the chord
    steps in :meth:`NonlinearPoisson.solution` supply them)."""

    @staticmethod
    def forward(problem, kappa_model, theta):
        return problem.state(kappa_model, theta)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output)

    @staticmethod
    def backward(ctx, grad_u):
        return None, None, None

    @staticmethod
    def jvp(ctx, *tangents):
        return None

    @staticmethod
    def vmap(info, in_dims, problem, kappa_model, theta):
        if in_dims[2] is None:
            return _NewtonSolve.apply(problem, kappa_model, theta), None
        thetas = theta.movedim(in_dims[2], 0)
        return torch.stack([_NewtonSolve.apply(problem, kappa_model, t) for t in thetas]), 0


@dataclass(eq=False)
class NewtonStateLoss:
    """``theta -> misfit(u*(theta))`` where ``u*`` solves ``-div(kappa_theta(u) grad u) = f`` (Newton).

    The coefficient ``kappa_theta(u_q)`` takes the state at each quadrature point as its
    input, so ``u_q`` depends on theta too. :meth:`hessian` is the exact reduced Hessian by
    the Lagrangian ``L = m(u) - lambda^T R(u, theta)``, ``R = K(kappa(theta, Phi u)) u - F``:

        H = N(rho) + S^T Y + Y^T S,    S = du/dtheta = -R_u^{-1} C(u) J,   Y = (1/2) L_uu S + Z,

    with ``rho_q = -lambda^T K_q u`` the network weights, the per-point algebra over
    ``(theta, u_q)`` jointly (:func:`~invfem.nn.hessian.network_terms` with input derivatives:
    ``N``, ``rho d(J)/dx``, ``rho kappa''``), ``Z = Phi^T diag(rho) J_x - C(lambda)^T J`` and
    ``L_uu = Hess m + Phi^T diag(rho kappa'') Phi - Phi^T diag(kappa') C(lambda)^T - C(lambda) diag(kappa') Phi``.
    One factorization of the Newton Jacobian ``R_u`` (shared with the chord steps of the loss)
    serves the adjoint and the ``P``-column sensitivity solve.
    """

    pde: NonlinearPoisson
    mlp: object
    misfit: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.misfit(self.pde.solution(self.mlp, theta))

    @property
    def supported(self) -> bool:
        """Whether the closed-form network algebra applies (a one-input, one-output invfem MLP)."""
        return supports_fast_hessian(self.mlp) and self.mlp.widths[0] == 1

    @property
    def has_residual(self) -> bool:
        """Whether the misfit is a sum of squares of observations (an ObservationMisfit)."""
        return isinstance(self.misfit, ObservationMisfit)

    def residual(self, theta: torch.Tensor) -> torch.Tensor:
        """``w^1/2 (B u - d)``: the loss is its squared norm."""
        return self.misfit.weighted_residual(self.pde.solution(self.mlp, theta))

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """``w^1/2 B S``, ``S = -R_u^{-1} C(u) J`` with ``J = d kappa_theta(u_q) / d theta`` at fixed
        ``u_q`` (closed form): one P-column solve on the Newton Jacobian's factorization."""
        theta = theta.detach()
        pde, mlp = self.pde, self.mlp
        u = pde.state(mlp, theta)
        kq, dkq = pde._state(lambda z: mlp(theta, z), u)
        space = pde.space
        network = NetworkJacobian(mlp, theta, space.interpolate(u)[:, None])
        c_j = network.left_multiply(space.coupling_matrix(pde.stiffness.coupling(u), space.free_rows, space.n_free))
        sens = state_sensitivity(pde.jacobian_values(u, kq, dkq), pde.system.solver, c_j)
        return self.misfit.residual_jacobian(sens, space.free_rows)

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """Exact ``(P, P)`` Hessian at ``theta`` (class docstring)."""
        theta = theta.detach()
        pde, mlp = self.pde, self.mlp
        space, stiffness, solver = pde.space, pde.stiffness, pde.system.solver
        free = space.free_index
        kappa = lambda z: mlp(theta, z)
        u = pde.state(mlp, theta)
        kq, dkq = pde._state(kappa, u)
        a_ff = pde.jacobian_values(u, kq, dkq)                        # R_u on the free dofs
        m_u = value_and_grad(self.misfit, u)[1]
        lam = space.expand(sparse_solve(a_ff, m_u[free], solver, transpose=True))
        coef_u = stiffness.coupling(u)                                 # C(u)[:, q]      = K_q u
        coef_lam = stiffness.coupling(lam, transpose=True)             # C(lambda)[:, q] = K_q^T lambda
        coef_phi = space.phi.permute(1, 0, 2)                          # Phi[q, dof_a]   = phi_a(x_q)
        rho = -torch.einsum("ae,eaq->eq", lam[space.element_dofs], coef_u).reshape(-1)
        # free-row numbering: free dofs first, every Dirichlet dof onto a dump row n_free
        rows, n_free, n_qp = space.free_rows, space.n_free, space.n_qp
        coupled = torch.cat([coef_u, coef_lam], 1)
        acc: dict[str, torch.Tensor] = {}

        def on_chunk(sl, jac_rows, mixed_rows):     # J and rho dJ/dx consumed while in cache
            if not acc:
                acc["products"] = jac_rows.new_zeros(2, n_free + 1, jac_rows.shape[1])   # C(u) J, C(lambda)^T J
                acc["y"] = jac_rows.new_zeros(1, n_free + 1, jac_rows.shape[1])          # Phi^T diag(rho) J_x
            elements = slice(sl.start // n_qp, sl.stop // n_qp)
            space.scatter_points(coupled, jac_rows, out=acc["products"], elements=elements, dof_rows=rows)
            space.scatter_points(coef_phi, mixed_rows[:, :, 0], out=acc["y"], elements=elements, dof_rows=rows)

        chunk = max(1, DEFAULT_CHUNK // n_qp) * n_qp
        terms = network_terms(mlp, theta, space.interpolate(u)[:, None], rho, input_derivatives=True, chunk=chunk,
                              on_chunk=on_chunk, store=False)
        dk, products, y = terms.kappa_x[:, 0], acc["products"], acc["y"]
        sens = products.new_zeros(n_free + 1, products.shape[-1])
        sens[:n_free] = sparse_solve(a_ff, products[0, :n_free], solver).neg_()
        # Y = Z + (1/2) L_uu S, accumulated in one buffer:  Z = Phi^T diag(rho) J_x - C(lambda)^T J
        y[0].sub_(products[1])
        # the state-state terms of the Lagrangian are one element-assembled sparse matrix:
        # Phi^T diag(rho kappa'') Phi - Phi^T diag(kappa') C(lambda)^T - C(lambda) diag(kappa') Phi
        w_rho, w_dk = terms.input_hessian[:, 0, 0].view(-1, n_qp), dk.view(-1, n_qp)
        cross = torch.einsum("eaq,ebq,eq->eab", coef_phi, coef_lam, w_dk)
        element = torch.einsum("eaq,ebq,eq->eab", coef_phi, coef_phi, w_rho) - cross - cross.transpose(1, 2)
        l_uu = pde.system.pattern.csr(pde.system.condense_matrix(stiffness.assemble(element)))
        y[0, :n_free].addmm_(l_uu, sens[:n_free], alpha=0.5)
        y = y[0, :n_free]
        add_hessian_on_free_rows(self.misfit, space, y, u, sens[:n_free], alpha=0.5)
        h = sens[:n_free].T @ y
        return terms.hessian.add_(h).add_(h.T)

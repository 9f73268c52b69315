"""Exact Hessians by the structure of a loss, and the ONE place that picks the Hessian path.

A loss built from a network coefficient, ``L(theta) = outer(kappa_theta(x_q))``, has the
exact Hessian

    H = J^T W J + N(g, w),    J = d kappa / d theta,  g = grad outer,  W = Hess outer,

where ``N(g, w) = sum_q g_q Hess kappa_q + w_q J_q J_q^T`` (``w``: the part of ``W`` that is
diagonal in the points) comes in closed form from :func:`invfem.nn.hessian.network_terms`
at about ``2 P^2 Q`` flops, and ``J^T W J`` comes from the outer loss:

* an outer loss with a ``linearize(kappa)`` method (the FEM losses of :mod:`invfem.fem`)
  returns a :class:`Linearization` whose ``curvature(J)`` forms ``J^T W J`` in the cheapest
  space it knows (state sensitivities ``S = du/dtheta`` by one multi-right-hand-side solve,
  then dense products with the dofs as inner dimension; hIPPYlib's reduced Hessian);
* any other outer loss gets :func:`generic_linearization`: ``min(P, Q)`` batched
  Hessian-vector products of ``outer`` in coefficient space, then one product with ``J``.

:func:`hessian_path` is where a problem's Hessian is chosen: its ``structure`` when the
structure applies (an invfem :class:`~invfem.nn.MLP` with one output), else the generic
batched Hessian of :func:`invfem.derivatives.hessian`. Nothing else picks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import grad, jvp, vmap

from invfem.derivatives import hessian as generic_hessian
from invfem.derivatives import hvp as generic_hvp
from invfem.derivatives import value_and_grad
from invfem.errors import NonPositiveCoefficientError
from invfem.linalg.jacobian import JacobianOperator, as_dense
from invfem.nn.directional import NetworkDirections
from invfem.nn.hessian import DEFAULT_CHUNK, NetworkJacobian, network_terms, supports_fast_hessian

HVP_CHUNK = 128   # coefficient-space Hessian-vector products formed at once (memory)


#: above this size of the (Q, P) network Jacobian a residual Jacobian is formed from its factors
#: (measured, benchmarks/jacobian_cost.py: at 4.4 MB (600 points) forming J and one sparse
#: product is faster, 13 vs 24 ms for heat_residual; at 40 MB (5400 points) the factored
#: product, 47 vs 54 ms for poisson_fem 30x30)
FACTORED_JACOBIAN_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Linearization:
    """An outer loss at one coefficient: what the structured Hessian needs from it.

    ``gradient (Q,)``: ``grad outer``; ``pointwise (Q,)`` or None: the diagonal part of
    ``Hess outer`` that the network pass folds in; ``curvature(J) -> (P, P)``: ``J^T W J``
    for the rest of ``W = Hess outer``. A linearization that consumes ``J`` chunk by chunk
    sets ``on_chunk(sl, jac_rows, mixed_rows)`` (then ``curvature`` gets ``None``: the full
    ``(Q, P)`` Jacobian is never stored) and ``chunk_multiple`` (chunks hold whole elements).
    """

    gradient: torch.Tensor
    curvature: Callable[[torch.Tensor | None], torch.Tensor]
    pointwise: torch.Tensor | None = None
    on_chunk: Callable | None = None
    chunk_multiple: int = 1


def linearize(outer, kappa: torch.Tensor) -> Linearization:
    """``outer.linearize(kappa)`` where the outer loss has structure, else :func:`generic_linearization`."""
    kappa = kappa.detach()
    if hasattr(outer, "linearize"):
        return outer.linearize(kappa)
    return generic_linearization(outer, kappa)


def generic_linearization(outer, kappa: torch.Tensor) -> Linearization:
    """Gradient by reverse mode; ``J^T W J`` by ``min(P, Q)`` batched HVPs of ``outer`` in kappa.

    ``P <= Q``: ``W J`` column by column (one batched HVP per column of J), then ``J^T (W J)``;
    ``Q < P``: ``W`` itself from ``Q`` HVPs, then ``J^T W J``.
    """
    g = value_and_grad(outer, kappa)[1]

    def hvp_rows(directions):           # rows (k, Q) -> rows of W applied to them
        return vmap(lambda v: jvp(grad(outer), (kappa,), (v,))[1], chunk_size=HVP_CHUNK)(directions)

    def curvature(jac):
        n_points, n_params = jac.shape
        if n_params <= n_points:
            return hvp_rows(jac.T.contiguous()) @ jac
        w = hvp_rows(torch.eye(n_points, dtype=kappa.dtype, device=kappa.device))
        return jac.T @ (w @ jac)

    return Linearization(gradient=g, curvature=curvature)


@dataclass(frozen=True, eq=False)
class CoefficientLoss:
    """``loss(theta) = outer(mlp(theta, points))``: the network enters through kappa at fixed points.

    Calling it evaluates the loss (a pure, ``torch.func``-safe function of ``theta``);
    :meth:`hessian` is the exact Hessian ``N(g, w) + J^T W J`` (module docstring).
    """

    mlp: object
    points: torch.Tensor
    outer: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.outer(self.mlp(theta, self.points))

    @property
    def supported(self) -> bool:
        """Whether the closed-form network Hessian applies to ``mlp``."""
        return supports_fast_hessian(self.mlp)

    @property
    def has_residual(self) -> bool:
        """Whether the outer loss is a sum of squares with a residual (``residual_vector``)."""
        return has_residual(self.outer)

    def residual(self, theta: torch.Tensor) -> torch.Tensor:
        """The outer loss's residual at ``kappa_theta``: ``loss(theta) = ||residual(theta)||^2``."""
        return self.outer.residual_vector(self.mlp(theta, self.points))

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """``d residual / d theta`` ``(m, P)``: the outer loss's ``residual_jacobian`` applied to the
        network's closed-form ``J = d kappa / d theta`` (``torch.func.jacrev`` of the network for
        a network the closed form does not cover). No autograd through a solve. Where ``J`` would
        exceed :data:`FACTORED_JACOBIAN_BYTES` and the outer loss offers ``jacobian_coupling``,
        ``J`` stays factored (:class:`~invfem.nn.hessian.NetworkJacobian`)."""
        theta = theta.detach()
        coupling_of = getattr(self.outer, "jacobian_coupling", None) if self._factored(theta) else None
        if coupling_of is not None:
            # the outer's d residual / d kappa is finish(C @ .) for a sparse C: apply C to the
            # network's factored J (NetworkJacobian), never forming the (Q, P) matrix
            network = NetworkJacobian(self.mlp, theta, self.points)
            parts = coupling_of(network.kappa)
            if parts is not None:
                coupling, finish = parts
                product = network.left_multiply(coupling)
                return product if finish is None else finish(product)
        if self.supported:
            terms = network_terms(self.mlp, theta, self.points)
            kappa, jac = terms.kappa, terms.jac
        else:
            kappa = self.mlp(theta, self.points)
            jac = torch.func.jacrev(lambda t: self.mlp(t, self.points))(theta).reshape(kappa.numel(), -1)
        return self.outer.residual_jacobian(kappa.detach(), jac)

    def _factored(self, theta: torch.Tensor) -> bool:
        """Whether the ``(Q, P)`` network Jacobian is too large to form (:data:`FACTORED_JACOBIAN_BYTES`)."""
        return self.supported and self.points.shape[0] * theta.shape[0] * 8 > FACTORED_JACOBIAN_BYTES

    def jacobian_operator(self, theta: torch.Tensor):
        """:meth:`jacobian` as a :class:`~invfem.linalg.jacobian.JacobianOperator` ``L J_kappa``
        where the outer residual is affine in kappa with no solve (``jacobian_coupling`` gives
        ``(L, None)``: residual minimisation), for matrix-free solvers; the dense matrix otherwise
        (from the same network pass and coupling, nothing formed twice)."""
        coupling_of = getattr(self.outer, "jacobian_coupling", None) if self.supported else None
        if coupling_of is None or self._factored(theta):
            return self.jacobian(theta)
        theta = theta.detach()
        terms = network_terms(self.mlp, theta, self.points)
        parts = coupling_of(terms.kappa)
        if parts is None:
            return self.outer.residual_jacobian(terms.kappa, terms.jac)
        coupling, finish = parts
        return JacobianOperator(coupling, terms.jac) if finish is None else finish(coupling @ terms.jac)

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """Exact ``(P, P)`` Hessian at ``theta``."""
        theta = theta.detach()
        lin = linearize(self.outer, self.mlp(theta, self.points))
        chunk = max(1, DEFAULT_CHUNK // lin.chunk_multiple) * lin.chunk_multiple
        terms = network_terms(self.mlp, theta, self.points, lin.gradient, lin.pointwise, chunk=chunk,
                              on_chunk=lin.on_chunk, store=lin.on_chunk is None)
        return terms.hessian.add_(lin.curvature(terms.jac))

    def hessian_operator(self, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``V -> H V`` at ``theta`` (``V``: ``(P,)`` or a block ``(P, k)``), exact, without the P x P
        matrix: the network's closed-form directional passes (:class:`~invfem.nn.directional.
        NetworkDirections`, its state at ``theta`` computed once) around the outer loss's Hessian in
        kappa applied to ``J V`` (batched ``jvp(grad(outer))``: one multi-right-hand-side solve per
        block on the cached factorization; hIPPYlib's incremental forward and adjoint solves; a
        single direction by autograd's HVP of the outer loss)."""
        theta = theta.detach()
        network = NetworkDirections(self.mlp, theta, self.points)
        kappa = network.kappa
        network.weigh(value_and_grad(self.outer, kappa)[1])

        def outer_hvp(rows):           # one direction: autograd's HVP (measured 4x less overhead than vmap's)
            if rows.shape[0] == 1:
                return generic_hvp(self.outer, kappa, rows[0])[None]
            return vmap(lambda v: jvp(grad(self.outer), (kappa,), (v,))[1], chunk_size=HVP_CHUNK)(rows)
        return _as_block_operator(lambda block: network.hvp(block, outer_hvp))


def _as_block_operator(apply_block):
    """A block map ``(P, k) -> (P, k)`` that also takes one vector ``(P,)``."""
    return lambda v: apply_block(v) if v.ndim == 2 else apply_block(v[:, None])[:, 0]


def generic_hessian_operator(loss, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``V -> H V`` of any loss by :func:`invfem.derivatives.hvp`, column by column."""
    theta = theta.detach()
    return _as_block_operator(lambda block: torch.stack(
        [generic_hvp(loss, theta, block[:, j].contiguous()) for j in range(block.shape[1])], 1))


@dataclass(frozen=True)
class HessianPath:
    """The Hessian a problem uses: ``kind`` is ``"structured"`` or ``"generic"``; ``function(theta)``
    the dense ``(P, P)`` matrix; ``operator(theta)`` the map ``V -> H V`` (vectors or ``(P, k)``
    blocks) without the matrix; ``product_kind`` which product that is (``"structured"``: the
    closed-form directional passes, ``"generic"``: autograd's HVP)."""

    kind: str
    function: Callable[[torch.Tensor], torch.Tensor]
    operator: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]
    product_kind: str = "generic"
    state: Callable | None = None      # theta -> an object with apply(V) and gradient() (closed-form)

    @property
    def hessp(self) -> "CachedProduct":
        """``(theta, v) -> H(theta) v`` for :func:`invfem.minimize`'s ``hessp``: the operator at the
        latest ``theta`` kept, so the products of one iterate share its state."""
        return CachedProduct(self.operator) if self.state is None else CachedProduct(state=self.state)

    def minimize_arguments(self, derivatives: str) -> dict:
        """``hess`` and ``hessp`` for :func:`invfem.minimize` by a method's ``derivatives``: the dense
        Hessian for ``"hessian"``, the product for ``"hvp"``, neither otherwise. With a ``state``,
        ``"hvp"`` also gets ``jac`` from the products' held state (a PINN loss: the closed-form
        gradient at a trial point builds the state the products at that iterate reuse; measured
        in benchmarks/pinn_hessian.py)."""
        out = {"hess": self.function if derivatives == "hessian" else None,
               "hessp": self.hessp if derivatives == "hvp" else None}
        if derivatives == "hvp" and self.state is not None:
            out["jac"] = out["hessp"].gradient
        return out


class CachedProduct:
    """``(theta, v) -> H(theta) v`` from ``operator(theta)``, rebuilt only when ``theta`` changes;
    ``v`` may be a block ``(P, k)`` (``blocks``: what :meth:`invfem.optim.oracle.Oracle.hessp_block` asks).

    With ``state(theta)`` instead (an object with ``apply(V)`` and ``gradient()``, such as a PINN
    loss's closed-form :class:`~invfem.pinn.curvature.PinnCurvature`), :meth:`gradient` comes
    from the same held state: a Krylov method's gradient at a trial point builds the state its
    products at that iterate then reuse."""

    blocks = True

    def __init__(self, operator=None, state=None):
        if (operator is None) == (state is None):
            raise TypeError("CachedProduct takes one of operator and state")
        self.operator, self.state = operator, state
        self._theta = self._held = None

    def _at(self, theta: torch.Tensor):
        if self._theta is None or self._theta.shape != theta.shape or not torch.equal(self._theta, theta):
            self._held = None                        # free the old state first
            self._held = (self.operator or self.state)(theta)
            self._theta = theta.detach().clone()
        return self._held

    def __call__(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        held = self._at(theta)
        return held(v) if self.state is None else held.apply(v)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """``grad loss(theta)`` from the held state (only with ``state``)."""
        if self.state is None:
            raise TypeError("CachedProduct.gradient needs a state")
        return self._at(theta).gradient()


def hessian_path(problem, chunk_size: int | None = None) -> HessianPath:
    """The ONE place that picks a problem's exact Hessian.

    ``problem.structure`` (an object with ``hessian(theta)`` and ``supported``) when it
    applies; otherwise the generic batched Hessian of ``problem.loss`` (``chunk_size``
    directions per batch). Both are exact; the structured one is the fast one.
    """
    structure = getattr(problem, "structure", None)
    generic_operator = lambda theta: generic_hessian_operator(problem.loss, theta)
    if structure is not None and structure.supported:
        if has_operator(structure):
            # a closed-form state gives the gradient too, where the structure IS the loss
            state = getattr(structure, "curvature", None) if structure is problem.loss else None
            return HessianPath("structured", structure.hessian, structure.hessian_operator, "structured", state)
        return HessianPath("structured", structure.hessian, generic_operator)
    return HessianPath("generic", lambda theta: generic_hessian(problem.loss, theta, chunk_size=chunk_size),
                       generic_operator)


@dataclass(frozen=True, eq=False)
class RegularizedLoss:
    """``loss(theta) + alpha ||theta||^2`` for a structured loss: a Gaussian prior on theta.

    Its exact Hessian is the structure's plus ``2 alpha I``.
    """

    structure: object
    alpha: float

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.structure(theta) + self.alpha * (theta * theta).sum()

    @property
    def supported(self) -> bool:
        return getattr(self.structure, "supported", False)

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        h = self.structure.hessian(theta)
        h.diagonal().add_(2.0 * self.alpha)
        return h

    @property
    def has_operator(self) -> bool:
        return has_operator(self.structure)

    def hessian_operator(self, theta: torch.Tensor):
        """``V -> H V + 2 alpha V`` on the structure's operator."""
        inner = self.structure.hessian_operator(theta)
        return lambda v: inner(v).add_(v, alpha=2.0 * self.alpha)

    @property
    def has_residual(self) -> bool:
        return has_residual(self.structure)

    def residual(self, theta: torch.Tensor) -> torch.Tensor:
        """The structure's residual and ``alpha^1/2 theta`` (the prior as rows)."""
        return torch.cat([self.structure.residual(theta), math.sqrt(self.alpha) * theta])

    def jacobian_operator(self, theta: torch.Tensor):
        """The structure's Jacobian operator with ``alpha^1/2 I`` appended (dense where it is dense)."""
        inner = getattr(self.structure, "jacobian_operator", None)
        jac = inner(theta) if inner is not None else self.structure.jacobian(theta)
        if isinstance(jac, JacobianOperator):
            return jac.with_ridge(math.sqrt(self.alpha))
        return self._with_prior_rows(jac)

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        return self._with_prior_rows(self.structure.jacobian(theta))

    def _with_prior_rows(self, jac: torch.Tensor) -> torch.Tensor:
        """``[J; alpha^1/2 I]``: the prior's rows below the structure's Jacobian."""
        eye = torch.eye(jac.shape[1], dtype=jac.dtype, device=jac.device).mul_(math.sqrt(self.alpha))
        return torch.cat([jac, eye])


@dataclass(frozen=True, eq=False)
class WeightedSum:
    """``sum_i w_i L_i(theta)``: structured losses of one parameter vector (several experiments
    on one law, :func:`invfem.joint.joint_problem`).

    Its exact Hessian is ``sum_i w_i H_i`` (each term by its own structure: one factorization
    per experiment); as a sum of squares its residual stacks ``w_i^1/2 r_i`` and its Jacobian
    ``w_i^1/2 J_i``.
    """

    terms: tuple
    weights: tuple

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return sum(w * term(theta) for w, term in zip(self.weights, self.terms))

    @property
    def supported(self) -> bool:
        return all(getattr(term, "supported", False) for term in self.terms)

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        total = None
        for w, term in zip(self.weights, self.terms):
            h = term.hessian(theta).mul_(w)
            total = h if total is None else total.add_(h)
        return total

    @property
    def has_operator(self) -> bool:
        return all(has_operator(term) for term in self.terms)

    def hessian_operator(self, theta: torch.Tensor):
        """``V -> sum_i w_i H_i V`` on the terms' operators."""
        parts = [(w, term.hessian_operator(theta)) for w, term in zip(self.weights, self.terms)]
        return lambda v: sum(w * apply(v) for w, apply in parts)

    @property
    def has_residual(self) -> bool:
        return all(has_residual(term) for term in self.terms)

    def residual(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.cat([math.sqrt(w) * term.residual(theta) for w, term in zip(self.weights, self.terms)])

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.cat([math.sqrt(w) * term.jacobian(theta) for w, term in zip(self.weights, self.terms)])

    def jacobian_operator(self, theta: torch.Tensor) -> torch.Tensor:
        """The stacked Jacobian, formed (each term's operator or matrix made dense, then stacked)."""
        parts = [as_dense((getattr(term, "jacobian_operator", None) or term.jacobian)(theta))
                 for term in self.terms]
        return torch.cat([math.sqrt(w) * j for w, j in zip(self.weights, parts)])


@dataclass(frozen=True, eq=False)
class PositiveCoefficient:
    """An outer loss of kappa that is only defined for kappa > 0 at every point.

    Calling it (or linearizing it) with some kappa_q <= 0 raises
    :class:`~invfem.errors.NonPositiveCoefficientError` naming the smallest value and where
    it is (``describe(q)`` says where point ``q`` is): an optimizer rejects such a trial
    point like a NaN; at the start, or outside an optimizer, it is an error.
    """

    outer: Callable[[torch.Tensor], torch.Tensor]
    describe: Callable[[int], str]

    def check(self, kappa: torch.Tensor) -> None:
        smallest = kappa.detach().min()
        if bool(smallest <= 0):
            q = int(kappa.detach().argmin())
            raise NonPositiveCoefficientError(f"kappa <= 0: smallest value {float(smallest):.4g} at {self.describe(q)}; "
                                              "the operator is not elliptic there (a positive output transform, "
                                              "network positivity: softplus, keeps kappa > 0)")

    def __call__(self, kappa: torch.Tensor) -> torch.Tensor:
        self.check(kappa)
        return self.outer(kappa)

    def linearize(self, kappa: torch.Tensor) -> Linearization:
        self.check(kappa)
        return linearize(self.outer, kappa)

    @property
    def has_residual(self) -> bool:
        return has_residual(self.outer)

    def residual_vector(self, kappa: torch.Tensor) -> torch.Tensor:
        self.check(kappa)
        return self.outer.residual_vector(kappa)

    def residual_jacobian(self, kappa: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        self.check(kappa)
        return self.outer.residual_jacobian(kappa, jac)

    def jacobian_coupling(self, kappa: torch.Tensor):
        """The wrapped loss's ``(C, finish)`` (see :meth:`CoefficientLoss.jacobian`), or None
        where it has none."""
        inner = getattr(self.outer, "jacobian_coupling", None)
        if inner is None:
            return None
        self.check(kappa)
        return inner(kappa)


def has_operator(loss) -> bool:
    """Whether a structured loss has a closed-form Hessian-vector product (``hessian_operator``)."""
    flag = getattr(loss, "has_operator", None)
    if flag is not None:
        return bool(flag)
    return hasattr(loss, "hessian_operator")


def has_residual(loss) -> bool:
    """Whether a loss (or an outer loss of kappa) is a sum of squares that exposes its residual
    (``residual``/``jacobian`` of theta, or ``residual_vector``/``residual_jacobian`` of kappa)."""
    flag = getattr(loss, "has_residual", None)
    if flag is not None:
        return bool(flag)
    return hasattr(loss, "residual_vector") and hasattr(loss, "residual_jacobian")

"""The Problem object: data plus a pure loss function of a flat parameter vector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass(frozen=True, eq=False)
class Problem:
    """What an optimizer and a study need from an inverse problem.

    Attributes
    ----------
    name : short identifier.
    theta0 : flat float64 initial parameters (their device is the problem's device).
    loss : ``theta -> 0-d tensor``, a pure function of ``theta`` (``torch.func``-safe).
    kappa : ``(theta, points) -> coefficient values`` of the learned law, for plots.
    kappa_true : ``points -> values`` of the law that generated the data, if known.
    residual : ``theta -> (m,) residual vector`` with ``loss(theta) == ||residual(theta)||^2``
        (least-squares methods, Gauss–Newton), else None.
    jacobian : ``theta -> (m, n)`` Jacobian of ``residual`` (closed form where the problem has
        structure: no autograd through a solve), else None.
    jacobian_operator : the same Jacobian as a :class:`~invfem.linalg.jacobian.JacobianOperator`
        (sparse times dense factors, never multiplied out) where the problem has that form
        (residual minimisation), else the dense matrix; None where the problem has none. Pass it
        as ``residual_jacobian``: trf's LSMR subspace step runs on the factors, every other
        method forms the matrix.
    bounds : ``(lower, upper)`` tensors or None.
    structure : how the loss is built from the network (e.g. a
        :class:`~invfem.structured.CoefficientLoss`), with ``hessian(theta)`` and
        ``supported``; :meth:`hessian` uses it where it applies. None: generic Hessian only.
    fields : ``theta -> dict`` of nodal fields for ParaView (``u_theta``, ``kappa``, ...; heat:
        ``times`` and states ``(n_steps + 1, n_dofs)``), or None.
    info : sizes and settings worth reporting (dofs, parameters, mesh, ...).
    """

    name: str
    theta0: torch.Tensor
    loss: Callable[[torch.Tensor], torch.Tensor]
    kappa: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    kappa_true: Callable[[torch.Tensor], torch.Tensor] | None = None
    residual: Callable[[torch.Tensor], torch.Tensor] | None = None
    jacobian: Callable[[torch.Tensor], torch.Tensor] | None = None
    jacobian_operator: Callable[[torch.Tensor], object] | None = None
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None
    structure: object | None = None
    fields: Callable[[torch.Tensor], dict] | None = None
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.info.items() if k in ("n_dofs", "n_quad", "n_observations")
                          and isinstance(v, int))
        return (f"Problem({self.name!r}, {self.n_params} parameters" + (f", {sizes}" if sizes else "") +
                f", residual {'yes' if self.residual is not None else 'no'}, "
                f"structured Hessian {'yes' if self.structure is not None else 'no'})")

    @property
    def regularization(self) -> float:
        """The prior weight alpha of ``alpha ||theta||^2`` in the loss (``info["regularization"]``; 0 if none)."""
        return float(self.info.get("regularization", 0.0) or 0.0)

    def state_values(self, theta: torch.Tensor) -> torch.Tensor:
        """The nodal values of u that kappa(u) is evaluated at: ``u_theta`` of :attr:`fields` (the
        observed full field for residual losses), all experiments' concatenated for a joint
        problem (:func:`invfem.joint.joint_problem`)."""
        experiments = self.info.get("experiments")
        if experiments:
            return torch.cat([e["problem"].state_values(theta) for e in experiments])
        if self.fields is None:
            from invfem.errors import ConfigError
            raise ConfigError(f"problem {self.name!r} has no fields: give the u values to evaluate kappa(u) at")
        with torch.no_grad():
            fields = self.fields(theta)
        return fields.get("u_theta", fields.get("u_obs")).reshape(-1)

    @property
    def n_params(self) -> int:
        return int(self.theta0.shape[0])

    @property
    def solver_jacobian(self) -> Callable | None:
        """What to pass an optimizer as ``residual_jacobian``: :attr:`jacobian_operator` where the
        problem has one (matrix-free models keep its factors, the others form it), else
        :attr:`jacobian`."""
        return self.jacobian_operator if self.jacobian_operator is not None else self.jacobian

    @property
    def hessian_kind(self) -> str:
        """``"structured"`` or ``"generic"``: the path :meth:`hessian` takes (see
        :func:`invfem.structured.hessian_path`)."""
        from invfem.structured import hessian_path
        return hessian_path(self).kind

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The exact ``(n, n)`` Hessian of :attr:`loss` at ``theta``, by the fastest path that applies."""
        from invfem.structured import hessian_path
        return hessian_path(self).function(theta)

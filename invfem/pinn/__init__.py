"""Physics-informed losses with exact second derivatives in theta.

* :mod:`invfem.pinn.collocation` — Latin hypercube collocation sets (boxes, faces, space-time).
* :mod:`invfem.pinn.fields` — the network's input derivatives in closed form (:func:`network_jet`),
  the distance construction (:class:`PinnField`, :class:`BoxDistance`).
* :mod:`invfem.pinn.losses` — strong-form residuals and weighted BC/IC terms (:class:`PinnLoss`).
* :mod:`invfem.pinn.curvature` — every term as a linear function of the input jet
  (:class:`LinearForm`) and the loss's closed-form gradient, Hessian-vector product (the
  R-operator) and full Hessian (:class:`PinnCurvature`): what ``PinnLoss.hessian`` and
  ``hessian_operator`` use, so the PINN problems take invfem's structured Hessian path.

Reference 001's heat PINN and reference 002 §4's BVPs are built from these in
``invfem.problems.pinn_heat``, ``pinn_elliptic_1d`` and ``pinn_diffusion_reaction``.
"""

from invfem.pinn.curvature import LinearForm, PinnCurvature
from invfem.pinn.collocation import SpaceTimePoints, face_points, latin_hypercube, space_time_points
from invfem.pinn.fields import BoxDistance, Jet, PinnField, hidden_jet, network_jet, product_jet
from invfem.pinn.losses import EllipticResidual, HeatResidual, PinnLoss, ValueTerm

__all__ = ["LinearForm", "PinnCurvature", "SpaceTimePoints", "face_points", "latin_hypercube", "space_time_points",
           "BoxDistance", "Jet",
           "PinnField", "hidden_jet", "network_jet", "product_jet", "EllipticResidual", "HeatResidual",
           "PinnLoss", "ValueTerm"]

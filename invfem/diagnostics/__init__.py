"""Diagnostics of a trained law, each a plain function usable on its own.

- the law against a known one: :func:`kappa_error`, :func:`network_loss`;
- the curvature: :func:`spectrum` (sign counts at +-eps lambda_max), :func:`step_angles`
  (cos theta1, cos theta2), :func:`loss_profile`, :func:`eigen_profiles`, and
  :func:`definite_fraction` (how often a random symmetric matrix is definite: reference 002's Eq. 13);
- the network: :func:`magnitudes` (|weight| CDFs), :func:`activation_histograms`,
  :func:`saturation`;
- uncertainty: :func:`laplace` (the Laplace posterior from the exact Hessian), :func:`identifiability`
  (what of kappa the data determine, from the same Hessian);
- reference 002's regression view: :func:`basis_functions`, :func:`orthogonality`,
  :func:`gradient_split`, :func:`output_coefficients`, :func:`trivial_verdict`.
"""

from invfem.diagnostics.basis import (basis_functions, gradient_split, orthogonality, output_coefficients,
                                     trivial_verdict)
from invfem.diagnostics.curvature import definite_fraction, eigen_profiles, loss_profile, spectrum, step_angles
from invfem.diagnostics.errors import kappa_error, law_points, network_loss
from invfem.diagnostics.identifiability import identifiability
from invfem.diagnostics.laplace import LaplaceResult, laplace
from invfem.diagnostics.low_rank import LowRankHessian, low_rank_hessian
from invfem.diagnostics.network import activation_histograms, hidden_activations, magnitudes, saturation

__all__ = ["LaplaceResult", "LowRankHessian", "low_rank_hessian", "activation_histograms", "basis_functions", "gradient_split", "orthogonality",
           "output_coefficients", "trivial_verdict", "definite_fraction", "eigen_profiles", "hidden_activations", "identifiability", "kappa_error", "laplace",
           "law_points", "loss_profile", "magnitudes", "network_loss", "saturation", "spectrum", "step_angles"]

"""What the network looks like: weight magnitudes, hidden activations, saturation.

Reference 000 compares the cumulative distributions of |weights| and |biases| across
optimizers and histograms of the tanh activations at x = (0.5, 0.5) and over all quadrature
points: quasi-Newton methods reached larger weights and more saturated units.
"""

from __future__ import annotations

import numpy as np
import torch

from invfem.nn import MLP

#: |activation| above this counts as saturated (for tanh; sigmoid's activations are mapped to 2a - 1)
SATURATION = 0.99


def magnitudes(mlp: MLP, theta: torch.Tensor) -> dict:
    """Sorted |weights| and |biases| over all layers, each with its empirical CDF."""
    weights = np.sort(np.concatenate([w.detach().abs().reshape(-1).cpu().numpy() for w, _ in mlp.layers(theta)]))
    biases = np.sort(np.concatenate([b.detach().abs().reshape(-1).cpu().numpy() for _, b in mlp.layers(theta)]))
    cdf = lambda v: (np.arange(1, v.size + 1) / v.size).tolist()
    return {"weights": weights.tolist(), "weights_cdf": cdf(weights), "biases": biases.tolist(), "biases_cdf": cdf(biases)}


def hidden_activations(mlp: MLP, theta: torch.Tensor, points: torch.Tensor) -> list[torch.Tensor]:
    """The activations of every hidden layer at ``points`` (``(n, width)`` each)."""
    a = points if points.ndim == 2 else points[:, None]
    out = []
    with torch.no_grad():
        for w, b in mlp.layers(theta)[:-1]:
            a = mlp.sigma.value(torch.addmm(b, a, w.T))
            out.append(a)
    return out


def saturation(mlp: MLP, activations: list[torch.Tensor], threshold: float = SATURATION) -> float | None:
    """Fraction of (point, unit) activations beyond ``threshold`` of their range (tanh: |a| > 0.99;
    sigmoid: |2a - 1| > 0.99); None for activations without saturation (softplus, gelu)."""
    if mlp.activation not in ("tanh", "sigmoid"):
        return None
    values = torch.cat([a.reshape(-1) for a in activations])
    if mlp.activation == "sigmoid":
        values = 2 * values - 1
    return float((values.abs() > threshold).to(torch.float64).mean())


def activation_histograms(mlp: MLP, theta: torch.Tensor, point: torch.Tensor, points: torch.Tensor,
                          bins: int = 40) -> dict:
    """Histograms of the hidden activations at one ``point`` and over all ``points``, per layer,
    and the saturated fraction over all points."""
    lo, hi = (-1.0, 1.0) if mlp.activation == "tanh" else (None, None)
    at_point = hidden_activations(mlp, theta, point.reshape(1, -1))
    over_all = hidden_activations(mlp, theta, points)

    def hist(values):
        v = values.reshape(-1).cpu().numpy()
        counts, edges = np.histogram(v, bins=bins, range=(lo, hi) if lo is not None else (v.min(), v.max()))
        return {"counts": counts.tolist(), "edges": edges.tolist()}

    return {"at_point": [hist(a) for a in at_point], "all_points": [hist(a) for a in over_all],
            "point": point.reshape(-1).tolist(), "saturation": saturation(mlp, over_all)}

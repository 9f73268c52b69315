"""Neural-network coefficients over a flat parameter vector."""

from invfem.nn.mlp import MLP

__all__ = ["MLP"]

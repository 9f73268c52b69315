"""Optimizers on a flat parameter vector: one ``minimize`` API with full histories."""

from invfem.optim.api import METHODS, OptimizeResult, minimize

__all__ = ["METHODS", "OptimizeResult", "minimize"]

"""Optimizers on a flat parameter vector: one ``minimize`` API, one trust-region loop, full histories."""

from invfem.optim.api import METHODS, OptimizeResult, minimize
from invfem.optim.chain import minimize_chain
from invfem.optim.checkpoint import Checkpoint
from invfem.optim.options import (PRESETS, AdamOptions, BfgsOptions, ExactNewtonOptions, KrylovOptions, NewtonOptions,
                                  ReflectiveOptions, ScipyOptions, TrustExactOptions, TrustRegionOptions)
from invfem.optim.subproblems import eigen_trust_region, gltr, more_sorensen, steihaug_cg

__all__ = ["METHODS", "Checkpoint", "OptimizeResult", "minimize", "minimize_chain", "PRESETS", "AdamOptions", "BfgsOptions",
           "ExactNewtonOptions", "KrylovOptions", "NewtonOptions", "ReflectiveOptions", "ScipyOptions",
           "TrustExactOptions", "TrustRegionOptions", "eigen_trust_region", "gltr", "more_sorensen", "steihaug_cg"]

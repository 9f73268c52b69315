"""Experiment configs and the drivers behind ``invfem run``."""

from invfem.experiment.config import ExperimentConfig, load_config
from invfem.experiment.run import load_problem, run_experiment

__all__ = ["ExperimentConfig", "load_config", "load_problem", "run_experiment"]

"""Experiment configs and the drivers behind ``invfem run``, ``invfem compare`` and ``invfem report``."""

from invfem.experiment.compare import compare as _compare
from invfem.experiment.config import ExperimentConfig, load_config
from invfem.experiment.report import write_report
from invfem.experiment.run import load_problem, run_experiment
from invfem.experiment.study import StudyConfig, load_studies, load_study


def compare(config, **kwargs):
    """Run a study: ``config`` is a :class:`StudyConfig` or the path of its YAML file (see
    :func:`invfem.experiment.compare.compare` for ``workers``, ``scheduler``, ``executor``, ``quiet``).
    Returns its records; for a file with ``variants:``, a dict of variant name -> records."""
    if isinstance(config, StudyConfig):
        return _compare(config, **kwargs)
    studies = load_studies(config)
    if studies[0][0] is None:
        return _compare(studies[0][1], **kwargs)
    return {name: _compare(study, **kwargs) for name, study in studies}


__all__ = ["ExperimentConfig", "StudyConfig", "compare", "load_config", "load_problem", "load_studies", "load_study",
           "run_experiment", "write_report"]

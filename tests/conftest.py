import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seeds():
    """float64 and fixed seeds for every test, set here rather than at import time."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def interrupt_compare(monkeypatch):
    """``interrupt_compare(study, at)``: ``compare(study)`` stopped by a KeyboardInterrupt when a
    run reaches iteration ``at`` (as Ctrl-C there would), its checkpoints left behind."""
    import importlib
    cmp = importlib.import_module("invfem.experiment.compare")    # the module (the package exports the function)

    def interrupt(study, at):
        real = cmp._Tracker.__call__

        def interrupted(self, state):
            if state["iter"] == at:
                raise KeyboardInterrupt
            return real(self, state)
        with monkeypatch.context() as patch:
            patch.setattr(cmp._Tracker, "__call__", interrupted)
            with pytest.raises(KeyboardInterrupt):
                cmp.compare(study, quiet=True)
    return interrupt

"""Issue 21: resource estimates before work (memory of the P x P Hessian against the measured peak)."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, sys, torch
from invfem.derivatives import value_and_grad
from invfem.diagnostics import spectrum
from invfem.experiment.run import load_problem
from invfem.resources import hessian_memory
p = load_problem("poisson_fem", seed=0, n=6, widths=tuple(json.loads(sys.argv[1])))
value_and_grad(p.loss, p.theta0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
h = p.hessian(p.theta0)
spectrum(h, 1e-6)
torch.linalg.eigh(h)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"P": p.n_params, "estimate": hessian_memory(p.n_params), "measured": after - before}))
"""


@pytest.mark.parametrize("widths", [[2, 50, 50, 1]])
def test_the_dense_hessian_memory_estimate_is_within_2x_of_the_measured_peak(widths):
    """The peak resident memory a P x P Hessian and its spectrum add (measured in a fresh process)
    against invfem.resources.hessian_memory, the estimate every dense option is checked with."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(widths)], capture_output=True, text=True,
                         check=True, timeout=300)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = row["estimate"] / row["measured"]
    assert 0.5 <= ratio <= 2.0, row

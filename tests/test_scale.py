"""Issue 21: resource estimates before work (memory of the P x P Hessian against the measured peak)."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, sys, threading, time, torch
from invfem.derivatives import value_and_grad
from invfem.diagnostics import spectrum
from invfem.experiment.run import load_problem
from invfem.resources import hessian_memory

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

p = load_problem("poisson_fem", seed=0, n=6, widths=tuple(json.loads(sys.argv[1])))
value_and_grad(p.loss, p.theta0)
before, peak, done = resident(), [0], threading.Event()

def sample():                      # the resident memory every 2 ms while the Hessian and its spectrum are formed
    while not done.is_set():
        peak[0] = max(peak[0], resident())
        time.sleep(0.002)

sampler = threading.Thread(target=sample)
sampler.start()
h = p.hessian(p.theta0)
summary = spectrum(h, 1e-6)
pairs = torch.linalg.eigh(h)
done.set()
sampler.join()
peak[0] = max(peak[0], resident())
print(json.dumps({"P": p.n_params, "estimate": hessian_memory(p.n_params), "measured": peak[0] - before}))
"""

@pytest.mark.parametrize("widths", [[2, 50, 50, 1]])
def test_the_dense_hessian_memory_estimate_is_within_2x_of_the_measured_peak(widths):
    """The resident memory a P x P Hessian and its spectrum add at their peak (sampled in a fresh
    process, over its memory before them) against invfem.resources.hessian_memory, the estimate
    every dense option is checked with."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(widths)], capture_output=True, text=True,
                         check=True, timeout=300)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = row["estimate"] / max(row["measured"], 1)
    assert 0.5 <= ratio <= 2.0, row

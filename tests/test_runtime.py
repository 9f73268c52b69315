import subprocess
import sys

import pytest

from invfem import reuse_freed_memory

_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from invfem.runtime import reuse_freed_memory
    assert reuse_freed_memory()
def iteration():                        # four dense 921 x 921 float64 matrices at once, then freed
    return [np.ones(921 * 921) for _ in range(4)]
for _ in range(3):
    iteration()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    iteration()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 40)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_matrices_are_reused_not_faulted_in_again():
    def faults(mode):
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        return float(done.stdout)
    pages = 921 * 921 * 8 / 4096
    assert faults("default") > 0.15 * pages         # new matrices come back from the system page by page
    assert faults("reuse") < 0.02 * pages           # the freed one is reused
    assert reuse_freed_memory() is True and reuse_freed_memory() is True      # idempotent

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
size = int(sys.argv[2])
def iteration():                        # four dense float64 arrays at once, then freed
    return [np.ones(size) for _ in range(4)]
for _ in range(3):
    iteration()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    iteration()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 40)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("size", [921 * 921, 5400 * 921], ids=["PxP-hessian", "QxP-jacobian-40MB"])
def test_freed_matrices_are_reused_not_faulted_in_again(size):
    def faults(mode):
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode, str(size)], capture_output=True, text=True,
                              check=True)
        return float(done.stdout)
    pages = size * 8 / 4096
    reused = faults("reuse")
    # new matrices come back from the system page by page (fewer, larger faults where the kernel
    # backs a 40 MB block with huge pages, each zeroed on the fault)
    assert faults("default") > max(10 * reused, (0.15 if size < 2**22 else 0.03) * pages)
    assert reused < 0.02 * pages           # the freed one is reused (above 32 MB too)
    assert reuse_freed_memory() is True and reuse_freed_memory() is True      # idempotent

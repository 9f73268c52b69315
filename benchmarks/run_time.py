"""Wall time of ``invfem run configs/poisson_fem.yaml`` (100 trust-exact iterations, 10x10).

    python benchmarks/run_time.py [--repeat 3] [--config configs/poisson_fem.yaml]

Runs the command as a user would (a fresh interpreter each time: imports, problem,
Hessian at theta0 with its spectrum, 100 iterations, results.json and loss.png) and prints
the median wall time. Beside it, measured in the same run: the time of one float64
(921 x 600) (600 x 921) product — the machine's speed on the Hessian's own kind of work
(issue 8 quotes 6.8 ms for it on the machine where ``invfem run`` took 73 s before). Target
(issue 8): <= 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default="configs/poisson_fem.yaml")
    args = parser.parse_args(argv)
    a, b = torch.randn(921, 600, dtype=torch.float64), torch.randn(600, 921, dtype=torch.float64)
    walls, gemms = [], []
    for _ in range(args.repeat):
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            gemms.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "invfem.cli", "run", args.config, "--output", out], check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - start)
    print(f"invfem run {args.config}: {', '.join(f'{w:.1f}' for w in walls)} s; median {statistics.median(walls):.1f} s")
    print(f"reference GEMM (921x600)(600x921) float64 here: {statistics.median(gemms) * 1e3:.1f} ms "
          f"(issue 8's machine: 6.8 ms)")


if __name__ == "__main__":
    main()

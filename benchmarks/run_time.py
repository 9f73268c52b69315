"""Wall time of ``invfem run configs/poisson_fem.yaml`` (100 trust-exact iterations, 10x10).

    python benchmarks/run_time.py [--repeat 3] [--config configs/poisson_fem.yaml] [--baseline DIR]

Runs the command as a user would (a fresh interpreter each time: imports, problem,
Hessian at theta0 with its spectrum, 100 iterations, results.json and loss.png) and prints
the median wall time. Beside it, measured in the same run: the time of one float64
(921 x 600) (600 x 921) product — the machine's speed on the Hessian's own kind of work
(issue 8 quotes 6.8 ms for it on the machine where ``invfem run`` took 73 s before). Target
(issue 8): <= 10 s on 2 cores.

Below it, the median of each phase over the repeats, from the ``timings`` that results.json
records; "interpreter, imports, exit" is the wall time minus their sum. ``--baseline DIR`` times
the same command with the code of another checkout too, interleaved run by run (a baseline
older than these timings shows only its wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default="configs/poisson_fem.yaml")
    parser.add_argument("--baseline", help="a checkout of other invfem code (e.g. `git worktree add /tmp/base "
                                           "HEAD~3`): its `invfem run` is timed too, interleaved with this one")
    args = parser.parse_args(argv)
    a, b = torch.randn(921, 600, dtype=torch.float64), torch.randn(600, 921, dtype=torch.float64)
    codes = {"this code": None} | ({f"baseline {args.baseline}": args.baseline} if args.baseline else {})
    walls, phases, gemms = {k: [] for k in codes}, {k: [] for k in codes}, []
    for _ in range(args.repeat):
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            gemms.append(time.perf_counter() - start)
        for name, root in codes.items():
            wall, laps = _one_run(args.config, root)
            walls[name].append(wall)
            phases[name].append(laps)
    print(f"reference GEMM (921x600)(600x921) float64 here: {statistics.median(gemms) * 1e3:.1f} ms "
          f"(issue 8's machine: 6.8 ms)")
    for name in codes:
        print(f"invfem run {args.config} ({name}): {', '.join(f'{w:.1f}' for w in walls[name])} s; "
              f"median {statistics.median(walls[name]):.1f} s")
    print("| phase | " + " | ".join(f"{name}: median s" for name in codes) + " |\n|---|" + "---|" * len(codes))
    for phase in phases["this code"][0]:
        print(f"| {phase} | " + " | ".join(f"{statistics.median(p.get(phase, 0.0) for p in phases[name]):.2f}"
                                          for name in codes) + " |")


def _one_run(config: str, root: str | None) -> tuple[float, dict]:
    """Wall time of one ``invfem run`` (of the code under ``root`` when given) and its phases."""
    env, cwd = dict(os.environ), None
    if root is not None:     # `python -m` puts its working folder first on the path: run from the checkout
        cwd = Path(root).resolve()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "invfem.cli", "run", str(Path(config).resolve()), "--output", out],
                       check=True, capture_output=True, env=env, cwd=cwd)
        wall = time.perf_counter() - start
        results = json.loads((Path(out) / "results.json").read_text())
    timings = dict(results.get("timings", {}))
    seeds = list(timings.pop("seeds", {}).values())
    timings.pop("total", None)
    laps = {k: sum(s[k] for s in seeds) for k in seeds[0]} if seeds else {}
    laps.update(timings)
    laps["interpreter, imports, exit"] = wall - sum(laps.values())
    return wall, laps


if __name__ == "__main__":
    main()

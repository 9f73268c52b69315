"""Command line: ``invfem run CONFIG [--output DIR] [--seeds S ...]``."""

from __future__ import annotations

import argparse
import sys

import torch

from invfem.errors import InvfemError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="invfem", description="PDE-constrained inverse problems with exact Hessians")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="build a problem from a YAML config, inspect it at theta0 and train")
    run.add_argument("config")
    run.add_argument("--output", help="output folder (overrides the config)")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (override the config)")
    args = parser.parse_args(argv)

    from invfem.experiment import load_config, run_experiment

    torch.set_default_dtype(torch.float64)
    try:
        config = load_config(args.config, output=args.output, seeds=args.seeds)
        run_experiment(config)
    except InvfemError as exc:
        print(f"invfem: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reference 002's torus: which stationary point each method reaches from a grid of starts.

    python benchmarks/torus_basins.py [--n 16] [--figure docs/reference-002/torus_basins.png]

Prints, per method, how many of the n x n starts end at a minimum, a saddle, a maximum or
nowhere (not converged in 200 iterations), and draws the basins (one panel per method).
"""

from __future__ import annotations

import argparse

import torch

from invfem.problems import torus

METHODS = {"newton-exact": ("newton-exact", {}), "saddle-free-newton": ("saddle-free-newton", {}),
           "bfgs": ("bfgs", {}), "trust-exact": ("trust-exact", {})}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--figure")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    result = torus.basins(METHODS, n=args.n)
    kinds = [p["kind"] for p in torus.stationary_points()]
    print(f"{'method':>20} {'minimum':>8} {'saddle':>7} {'maximum':>8} {'none':>5}   (of {args.n * args.n} starts)")
    for label, reached in result.items():
        found = [kinds[i] if i >= 0 else "none" for i in reached.ravel()]
        print(f"{label:>20} " + " ".join(f"{found.count(k):>{w}}" for k, w in
                                         (("minimum", 8), ("saddle", 7), ("maximum", 8), ("none", 5))))
    if args.figure:
        torus.plot_basins(result, args.figure)


if __name__ == "__main__":
    main()

"""Reference 002's Eq. 13: how often is a random symmetric matrix definite?

    python benchmarks/random_hessians.py [--sizes 1 2 3 4 5 6 8 10 20] [--trials 100000] [--seed 0]

Independent N(0, 1) components (upper triangle and diagonal, mirrored), ``--trials`` matrices per
size (``invfem.diagnostics.definite_fraction``); prints the counts of all-positive and
all-negative spectra, their share, and the seconds each size took.
"""

from __future__ import annotations

import argparse
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 8, 10, 20])
    parser.add_argument("--trials", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from invfem.diagnostics import definite_fraction

    print("| n | trials | all positive | all negative | definite share | s |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        start = time.perf_counter()
        r = definite_fraction(n, args.trials, seed=args.seed)
        print(f"| {n} | {r['trials']} | {r['positive']} | {r['negative']} | {r['fraction']:.3g} | "
              f"{time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""Reference 002's question on study records: how often does each method end at the trivial saddle?

    python benchmarks/reference_002.py results/study_reference_002

For every variant (sub-study) and method: runs, how many end at the trivial solution
(:func:`invfem.diagnostics.trivial_verdict` on the final theta: stationary to 1e-6, f ~ 0
relative to the target, lambda_min < -1e-6 lambda_max), how many at any saddle, and the
median [min, max] final loss — from the records and theta.pt files, nothing rerun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from invfem.diagnostics import trivial_verdict
from invfem.experiment.report import load_records
from invfem.experiment.run import load_problem


def variant_rows(folder: Path) -> list[str]:
    study, records = load_records(folder, log=lambda *a: None)
    rows = []
    for m in study["methods"]:
        mine = [r for r in records if r["label"] == m["label"] and not r.get("failed")]
        trivial = saddle = 0
        for r in mine:
            p = load_problem(study["problem"], seed=r["seed"], **study["problem_options"])
            theta = torch.load(folder / "runs" / f"{r['label']}-seed{r['seed']}" / "theta.pt", weights_only=True)
            x = p.info["points"]
            v = trivial_verdict(p.loss, p.kappa, theta, x[:, None], p.info["targets"], p.hessian(theta))
            trivial += v["trivial"]
            saddle += v["saddle"]
        losses = [r["loss"] for r in mine]
        stat = f"{np.median(losses):.3g} [{min(losses):.3g}, {max(losses):.3g}]" if losses else "–"
        rows.append(f"| {folder.name} | {m['label']} | {len(mine)} | {trivial} | {saddle} | {stat} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the output folder of invfem compare configs/study_reference_002.yaml")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    print("| variant | method | runs | trivial saddle | any saddle (λmin < −1e-6 λmax) | final loss |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(p for p in Path(args.output).iterdir() if (p / "study.json").is_file()):
        print("\n".join(variant_rows(folder)))


if __name__ == "__main__":
    main()

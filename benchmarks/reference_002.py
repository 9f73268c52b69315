"""Reference 002's question on study records: how often does each method end at the trivial saddle?

    python benchmarks/reference_002.py results/study_reference_002 [--figures docs/reference-002]

For every variant (sub-study) and method: runs, how many end at the trivial solution
(:func:`invfem.diagnostics.trivial_verdict` on the final theta: stationary to 1e-6, f ~ 0
relative to the target, lambda_min < -1e-6 lambda_max), how many at any saddle, and the
median [min, max] final loss — from the records and theta.pt files, nothing rerun.

``--figures DIR`` draws reference 002's Figures 5-8 and 10-12 for every variant, as
``DIR/<variant>/basis.png``: for the first seed where ``--trivial-method`` (newton-damped)
ends at the trivial saddle (else the study's first seed), that run and ``--compare-method`` (trust-exact) from the same
seed side by side — the last hidden layer's basis functions on the test grid (each labelled
with its orthogonality |<phi_k, y>| / (||phi_k|| ||y||) to the target), the fit against the
target, and the sorted Hessian eigenvalues (symmetric-log scale; the line at 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from invfem.files import save_figure
from invfem.diagnostics import trivial_verdict
from invfem.diagnostics.basis import basis_functions, orthogonality
from invfem.experiment.records import final_theta
from invfem.experiment.report import load_records, median_range
from invfem.experiment.run import load_problem


def _final(folder: Path, study: dict, label: str, seed: int):
    """(problem, final theta, its Hessian, its trivial verdict) of one run."""
    p = load_problem(study["problem"], seed=seed, **study["problem_options"])
    theta = final_theta(folder, label, seed)
    x, hessian = p.info["points"], p.hessian(theta)
    return p, theta, hessian, trivial_verdict(p.loss, p.kappa, theta, x[:, None], p.info["targets"], hessian)


def variant_rows(folder: Path) -> tuple[list[str], dict]:
    """The table rows of one variant, and ``{label: [seeds ending trivial]}``."""
    study, records = load_records(folder, log=lambda *a: None)
    rows, trivial_seeds = [], {}
    for m in study["methods"]:
        mine = [r for r in records if r["label"] == m["label"] and not r.get("failed")]
        trivial = saddle = 0
        for r in mine:
            v = _final(folder, study, r["label"], r["seed"])[3]
            trivial += v["trivial"]
            saddle += v["saddle"]
            if v["trivial"]:
                trivial_seeds.setdefault(m["label"], []).append(r["seed"])
        stat = median_range([r["loss"] for r in mine], "{:.3g}".format)
        rows.append(f"| {folder.name} | {m['label']} | {len(mine)} | {trivial} | {saddle} | {stat} |")
    return rows, trivial_seeds


def basis_figure(folder: Path, labels: tuple[str, str], seed: int, path: Path) -> None:
    """Basis functions, fit and Hessian spectrum of two runs from one seed (module docstring)."""
    study, _ = load_records(folder, log=lambda *a: None)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), constrained_layout=True)
    for row, label in zip(axes, labels):
        p, theta, hessian, verdict = _final(folder, study, label, seed)
        grid = p.info["test_points"]
        target = p.kappa_true(grid[:, None])
        basis = basis_functions(p.info["mlp"], theta, p.info["inputs"](grid))
        ortho = orthogonality(basis, target)
        for k in range(basis.shape[0]):
            row[0].plot(grid, basis[k], lw=1, label=f"{float(ortho[k]):.2f}")
        row[0].set_title(f"{label} seed {seed}: basis (legend: orthogonality)", fontsize=9)
        row[0].legend(fontsize=6, ncol=2)
        with torch.no_grad():
            fit = p.kappa(theta, grid[:, None])
        row[1].plot(grid, target, "k", lw=2, label="target")
        row[1].plot(grid, fit, "r--", lw=1.5, label="fit")
        row[1].set_title(f"loss {float(p.loss(theta)):.3g}; trivial: {verdict['trivial']}", fontsize=9)
        row[1].legend(fontsize=8)
        eigenvalues = torch.linalg.eigvalsh(hessian)
        row[2].plot(eigenvalues, ".", ms=3)
        row[2].axhline(0.0, color="k", lw=0.8)
        row[2].set_yscale("symlog", linthresh=1e-8)
        row[2].set_title(f"spectrum: λmin {float(eigenvalues[0]):.2g}, λmax {float(eigenvalues[-1]):.2g}",
                         fontsize=9)
        row[2].set_xlabel("index")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the output folder of invfem compare configs/study_reference_002.yaml")
    parser.add_argument("--figures", help="draw DIR/<variant>/basis.png (module docstring)")
    parser.add_argument("--trivial-method", default="newton-damped")
    parser.add_argument("--compare-method", default="trust-exact")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    print("| variant | method | runs | trivial saddle | any saddle (λmin < −1e-6 λmax) | final loss |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(p for p in Path(args.output).iterdir() if (p / "study.json").is_file()):
        rows, trivial_seeds = variant_rows(folder)
        print("\n".join(rows))
        if args.figures:
            first = min(load_records(folder, log=lambda *a: None)[0]["seeds"])
            seeds = trivial_seeds.get(args.trivial_method) or [first]
            path = Path(args.figures) / folder.name / "basis.png"
            basis_figure(folder, (args.trivial_method, args.compare_method), seeds[0], path)
            print(f"<!-- {path}: seed {seeds[0]} -->")


if __name__ == "__main__":
    main()

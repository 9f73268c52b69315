"""Reference 001's Figures 1, 2 and 4 from the records of its study (nothing rerun).

    invfem compare configs/study_reference_001.yaml --workers 2
    python benchmarks/reference_001.py results/study_reference_001 --figures docs/reference-001

Prints one markdown row per target and method: whether the run reached loss <= 1e-6 (the
study's ``loss_threshold``), the iterations and seconds it took, the run's iterations, wall
time and seconds per iteration, its final training loss and its test error (mean squared
error on the 10,000-point test grid). ``--figures DIR`` writes

- ``DIR/iterations_time.png``: iterations and wall time to the threshold per target and
  method (Figure 4a/4b); a hatched bar marks a run that stopped at its budget first, at the
  height of the budget it used;
- ``DIR/loss_first500.png``: the training loss over the first 500 iterations (Figure 2);
- ``DIR/fits.png``: each method's final fit against the target on the test grid (Figure 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from invfem.files import save_figure  # noqa: E402
from invfem.experiment.records import final_theta  # noqa: E402
from invfem.experiment.report import load_records, threshold_crossing  # noqa: E402
from invfem.experiment.run import load_problem  # noqa: E402


def collect(output: Path) -> list[dict]:
    """One row per (target, method): the run's numbers and its final fit on the test grid."""
    from invfem.problems.regression import TARGETS
    order = {name: i for i, name in enumerate(TARGETS)}        # reference 001's order, then the others
    out = []
    folders = [p for p in output.iterdir() if (p / "study.json").is_file()]
    for folder in sorted(folders, key=lambda p: (order.get(p.name, len(order)), p.name)):
        study, records = load_records(folder, log=lambda *a: None)
        threshold = float(study.get("loss_threshold") or 1e-6)
        for r in sorted(records, key=lambda r: r["label"]):
            if r.get("failed"):
                continue
            p = load_problem(study["problem"], seed=r["seed"], **study["problem_options"])
            theta = final_theta(folder, r["label"], r["seed"])
            seconds, iterations = threshold_crossing(r, threshold)
            grid = p.info["test_points"]
            with torch.no_grad():
                fit = p.kappa(theta, grid[:, None]).numpy()
            out.append({"target": folder.name, "method": r["label"], "seed": r["seed"], "threshold": threshold,
                        "reached": seconds is not None, "iterations": iterations, "seconds": seconds,
                        "nit": r["nit"], "wall_time": r["wall_time"], "loss": r["loss"],
                        "test_error": p.info["test_error"](theta), "nhev": r["nhev"],
                        "history": [(h["iter"], h["f"], h["time"]) for h in r["history"]],
                        "grid": grid.numpy(), "fit": fit, "true": p.kappa_true(grid[:, None]).numpy()})
    return out


def table(rows: list[dict]) -> str:
    lines = ["| target | method | reached 1e-6 | iterations to 1e-6 | seconds to 1e-6 | iterations run | "
             "wall time [s] | s / iteration | HVPs | final loss | test MSE |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['method']} | {'yes' if r['reached'] else 'no'} | "
                     f"{r['iterations'] if r['reached'] else '–'} | "
                     f"{format(r['seconds'], '.1f') if r['reached'] else '–'} | {r['nit']} | {r['wall_time']:.1f} | "
                     f"{r['wall_time'] / max(r['nit'], 1):.3f} | {r['nhev']} | {r['loss']:.2e} | "
                     f"{r['test_error']:.2e} |")
    return "\n".join(lines)


def figures(rows: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    targets = list(dict.fromkeys(r["target"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    by = {(r["target"], r["method"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    width = 0.8 / len(methods)
    for ax, key, budget, label in ((axes[0], "iterations", "nit", "iterations to loss ≤ 1e-6"),
                                   (axes[1], "seconds", "wall_time", "wall time to loss ≤ 1e-6 [s]")):
        for j, m in enumerate(methods):
            for i, t in enumerate(targets):
                r = by.get((t, m))
                if r is None:
                    continue
                reached = r["reached"]
                ax.bar(i + (j - (len(methods) - 1) / 2) * width, r[key] if reached else r[budget], width,
                       color=colors[m], hatch=None if reached else "//", alpha=1.0 if reached else 0.45,
                       label=m if i == 0 else None)
        ax.set_xticks(range(len(targets)), targets)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.legend(title="hatched: budget hit first", fontsize=8, title_fontsize=8)
    save_figure(fig, folder / "iterations_time.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, (len(targets) + 1) // 2, figsize=(14, 6.5), constrained_layout=True, squeeze=False)
    for ax, t in zip(axes.flat, targets):
        for m in methods:
            r = by.get((t, m))
            if r is None:
                continue
            h = np.array([(i, f) for i, f, _ in r["history"] if i <= 500])
            ax.semilogy(h[:, 0], h[:, 1], color=colors[m], label=m)
        ax.axhline(rows[0]["threshold"], color="k", lw=0.7, ls=":")
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8)
    save_figure(fig, folder / "loss_first500.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, (len(targets) + 1) // 2, figsize=(14, 6.5), constrained_layout=True, squeeze=False)
    for ax, t in zip(axes.flat, targets):
        first = next(r for r in rows if r["target"] == t)
        ax.plot(first["grid"], first["true"], "k", lw=2.5, label="target")
        for m in methods:
            r = by.get((t, m))
            if r is not None:
                ax.plot(r["grid"], r["fit"], "--", color=colors[m], lw=1.5, label=f"{m} (test {r['test_error']:.1e})")
        ax.set_title(t, fontsize=10)
        ax.legend(fontsize=7)
    save_figure(fig, folder / "fits.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the output folder of invfem compare configs/study_reference_001.yaml")
    parser.add_argument("--figures", help="write the figures into this folder")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    rows = collect(Path(args.output))
    if not rows:
        raise SystemExit(f"{args.output}: no finished runs")
    print(table(rows))
    if args.figures:
        figures(rows, Path(args.figures))


if __name__ == "__main__":
    main()

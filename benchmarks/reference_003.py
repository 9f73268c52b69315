"""Reference 003's comparison from the records of its study (nothing rerun).

    invfem compare configs/study_reference_003.yaml --workers 2
    python benchmarks/reference_003.py results/study_reference_003 --figures docs/reference-003

Prints one markdown row per method (label): how many seeds reached the study's
``loss_threshold`` (reference 003's stop, a sum of squares < 0.01, i.e. mean < 0.01/60),
the median [min, max] iterations and wall seconds to it (the Adam stage included), the
second stage's iterations, Hessians or HVPs, and the final loss. ``--figures DIR`` writes
``DIR/loss.png`` (loss against iteration and wall time, every seed) and ``DIR/fits.png``
(each method's trajectory u_theta(t) against the 30 samples, first seed, and the phase
plane).
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
from invfem.experiment.report import load_records, median_range, threshold_crossing  # noqa: E402
from invfem.experiment.run import load_problem  # noqa: E402


def table(study: dict, records: list[dict]) -> str:
    threshold = float(study["loss_threshold"])
    whole, seconds, sci = "{:.0f}".format, "{:.1f}".format, "{:.2e}".format
    lines = [f"| method | reached {threshold:.3g} | iterations to it | seconds to it | second-stage iterations | "
             "Hessians or HVPs | final loss |", "|---|---|---|---|---|---|---|"]
    for m in study["methods"]:
        mine = [r for r in records if r["label"] == m["label"] and not r.get("failed")]
        hits = [threshold_crossing(r, threshold) for r in mine]
        reached = [h for h in hits if h[0] is not None]
        second = [r["stages"][-1]["nit"] if r.get("stages") and len(r["stages"]) > 1 else None for r in mine]
        lines.append(f"| {m['label']} | {len(reached)}/{len(mine)} | {median_range([h[1] for h in reached], whole)} | "
                     f"{median_range([h[0] for h in reached], seconds)} | {median_range(second, whole)} | "
                     f"{median_range([r['nhev'] for r in mine], whole)} | "
                     f"{median_range([r['loss'] for r in mine], sci)} |")
    return "\n".join(lines)


def figures(output: Path, study: dict, records: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    labels = [m["label"] for m in study["methods"]]
    colors = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    for r in records:
        if r.get("failed"):
            continue
        h = np.array([(x["iter"], x["f"], x["time"]) for x in r["history"]])
        first = r["seed"] == min(x["seed"] for x in records if x["label"] == r["label"])
        for ax, col in ((axes[0], 0), (axes[1], 2)):
            ax.semilogy(h[:, col], h[:, 1], color=colors[r["label"]], lw=1, label=r["label"] if first else None)
    for ax, name in zip(axes, ("iteration", "wall time [s]")):
        ax.axhline(float(study["loss_threshold"]), color="k", lw=0.7, ls=":")
        ax.set_xlabel(name)
        ax.set_ylabel("loss (mean of squares)")
        ax.legend(fontsize=8)
    save_figure(fig, folder / "loss.png", dpi=110)
    plt.close(fig)

    seed = min(r["seed"] for r in records)
    problem = load_problem(study["problem"], seed=seed, **study.get("problem_options", {}))
    times, observed = problem.info["times"].numpy(), problem.info["observed"].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for k in range(2):
        axes[k].plot(times, observed[:, k], "ko", ms=4, label="samples")
    axes[2].plot(observed[:, 0], observed[:, 1], "ko", ms=4, label="samples")
    for r in records:
        if r.get("failed") or r["seed"] != seed:
            continue
        theta = final_theta(output, r["label"], seed)
        with torch.no_grad():
            u = problem.info["trajectory"](theta).numpy()
        for k in range(2):
            axes[k].plot(times, u[:, k], color=colors[r["label"]], label=f"{r['label']} ({r['loss']:.1e})")
        axes[2].plot(u[:, 0], u[:, 1], color=colors[r["label"]], label=r["label"])
    for k in range(2):
        axes[k].set_xlabel("t")
        axes[k].set_title(f"u{k + 1}(t), seed {seed}", fontsize=10)
        axes[k].legend(fontsize=7)
    axes[2].set_xlabel("u1")
    axes[2].set_ylabel("u2")
    axes[2].set_title("phase plane", fontsize=10)
    save_figure(fig, folder / "fits.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the output folder of invfem compare configs/study_reference_003.yaml")
    parser.add_argument("--figures", help="write the figures into this folder")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    study, records = load_records(Path(args.output), log=lambda *a: None)
    if not records:
        raise SystemExit(f"{args.output}: no finished runs")
    print(table(study, records))
    if args.figures:
        figures(Path(args.output), study, records, Path(args.figures))


if __name__ == "__main__":
    main()

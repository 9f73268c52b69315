"""Reference 000's claims, checked on the records of `invfem compare` studies.

    python benchmarks/reference_000.py results/study_poisson_residual results/study_heat_residual \\
        results/study_poisson_fem [--times 10 60]

Reads each study's records (and final θ) — nothing is rerun — and prints, per study and
method, the median [min, max] over seeds of what reference 000 compares:

* accuracy: final loss and κ's relative L2 error; the loss each method had reached after
  ``--times`` seconds of its own wall time (what the same time buys);
* speed: iterations and wall time to the study's ``loss_threshold``; "iterations to
  converge": until the loss is within 1e-6 (relative) of the best loss the run reached —
  meaningful where the loss levels off (the noisy κθ(u) problem; the reference: "the
  trust-region method converges in around 270 iterations");
* curvature at the end: eigenvalues > ε·λmax and < −ε·λmax of the exact Hessian, and the
  positive count of the network-only loss Σ(κθ(x_q) − κ(x_q))² where κ is known;
* the network: median and 90th percentile of |weights|, the largest |weight|, and the
  fraction of saturated tanh units (|a| > 0.99) over all quadrature points and at the
  activation point (default (0.5, 0.5)).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from invfem.diagnostics import hidden_activations, saturation
from invfem.experiment.records import final_theta
from invfem.experiment.report import load_records, median_range, threshold_crossing
from invfem.experiment.run import load_problem


def _stat(values, fmt="{:.3g}"):
    """:func:`~invfem.experiment.report.median_range` of the finite values."""
    return median_range([v for v in values if v is not None and np.isfinite(v)], fmt.format)


def converged_at(history, rel=1e-6):
    """(iteration, time) of the first entry within ``rel`` of the run's best loss."""
    best = min(h["f"] for h in history)
    for h in history:
        if h["f"] - best <= rel * abs(best):
            return h["iter"], h["time"]
    return None, None


def loss_at(history, seconds):
    """The loss after ``seconds`` of the method's wall time (None if the run was shorter and still running)."""
    reached = [h for h in history if h["time"] <= seconds]
    if history[-1]["time"] < seconds:
        return history[-1]["f"]                         # the run ended before: its final loss
    return reached[-1]["f"] if reached else None


def network_numbers(study, record, output: Path):
    """Weight magnitudes and saturation from the run's final theta."""
    theta = final_theta(output, record["label"], record["seed"])
    p = load_problem(study["problem"], seed=record["seed"], **study["problem_options"])
    mlp, final = p.kappa, record["diagnostics"]["final"]
    w = np.array(final["magnitudes"]["weights"])
    point = torch.tensor([study["activation_point"]] if p.info.get("kappa_input", "x") == "x" else
                         [[float(np.mean(np.array(final["kappa"]["points"])[:, 0]))]], dtype=torch.float64)
    return {"w_median": float(np.median(w)), "w_90": float(np.quantile(w, 0.9)), "w_max": float(w.max()),
            "sat_all": final.get("activations", {}).get("saturation"),
            "sat_point": saturation(mlp, hidden_activations(mlp, theta, point))}


def study_tables(output: Path, times) -> str:
    study, records = load_records(output, log=lambda *a: None)
    records = [r for r in records if not r.get("failed")]
    labels = [m["label"] for m in study["methods"]]
    lines = [f"### {study['problem']} (`{output}`)", "",
             f"{len(records)} runs; seeds {study['seeds']}; budget {study['maxiter']} iterations per run.", "",
             "| method | final loss | κ error | " + " | ".join(f"loss at {t:g} s" for t in times) +
             f" | iterations to loss {study['loss_threshold']:g} | time to loss {study['loss_threshold']:g} (s) | "
             "iterations to converge | wall time (s) |",
             "|---|---|---|" + "---|" * len(times) + "---|---|---|---|"]
    extra = {}
    for label in labels:
        mine = [r for r in records if r["label"] == label]
        conv = [converged_at(r["history"]) for r in mine]
        hit = [threshold_crossing(r, study["loss_threshold"])[::-1] for r in mine]      # (iteration, seconds)
        hit = [h for h in hit if h[0] is not None]
        cells = [label, _stat([r["loss"] for r in mine]), _stat([r.get("kappa_error") for r in mine])]
        cells += [_stat([loss_at(r["history"], t) for r in mine]) for t in times]
        cells += [f"{_stat([h[0] for h in hit], '{:.0f}')} ({len(hit)}/{len(mine)})", _stat([h[1] for h in hit]),
                  _stat([c[0] for c in conv], "{:.0f}"), _stat([r["wall_time"] for r in mine])]
        lines.append("| " + " | ".join(cells) + " |")
        extra[label] = [network_numbers(study, r, output) for r in mine]
    lines += ["", "| method | λ > ε·λmax | λ < −ε·λmax | network-only λ > ε·λmax | median |w| | 90% |w| | "
                  "max |w| | saturated (all points) | saturated (at point) |", "|---|---|---|---|---|---|---|---|---|"]
    for label in labels:
        mine = [r for r in records if r["label"] == label]
        net = [r["diagnostics"]["final"].get("network_loss", {}).get("n_positive") for r in mine]
        e = extra[label]
        lines.append(f"| {label} | {_stat([r['n_positive'] for r in mine], '{:.0f}')} | "
                     f"{_stat([r['n_negative'] for r in mine], '{:.0f}')} | {_stat(net, '{:.0f}')} | "
                     f"{_stat([x['w_median'] for x in e])} | {_stat([x['w_90'] for x in e])} | "
                     f"{_stat([x['w_max'] for x in e])} | {_stat([x['sat_all'] for x in e], '{:.2f}')} | "
                     f"{_stat([x['sat_point'] for x in e], '{:.2f}')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="+", help="output folders of invfem compare")
    parser.add_argument("--times", type=float, nargs="+", default=[10.0, 60.0])
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    print("Median [min, max] over seeds.\n")
    for output in args.outputs:
        print(study_tables(Path(output), args.times))


if __name__ == "__main__":
    main()

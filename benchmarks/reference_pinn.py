"""The PINN studies of references 001 and 002 on their records: tables and figures, nothing rerun.

    python benchmarks/reference_pinn.py [--heat results/study_reference_001_pinn]
        [--bvp results/study_reference_002_pinn] [--fits results/study_reference_001]
        [--figures docs/reference-pinn]

``--heat`` (``configs/study_reference_001_pinn.yaml``): per method the iterations, wall time, time per
iteration, HVPs, final loss, each term's mean square and the test error at t = 1 against the FEM
solution; figures ``heat_curves.png`` (001's Fig. 5: loss and test error against iterations and
wall time), ``heat_solutions.png`` (Fig. 6: the FEM solution at t = 1 beside both networks and their
errors) and ``heat_trust_region.png`` (Figs. 3c/3d: CG iterations per trust-region step and the
radius over the iterations; with ``--fits`` also for the six function fits of
``configs/study_reference_001.yaml``).

``--bvp`` (``configs/study_reference_002_pinn.yaml``): per variant and method the runs that end at the
trivial saddle (:func:`invfem.diagnostics.trivial_verdict`: stationary to 1e-6, u ~ 0 relative to
the exact solution at the collocation points, lambda_min < -1e-6 lambda_max), at any saddle, that
fit (test error <= 1e-3), that diverge (a non-finite loss or a final loss above 10x the loss of
u = 0, or a run that overflowed), and over the runs that did not diverge the median [min, max]
of the final loss, test error, iterations and wall time;
figures ``<variant>/curves.png`` (loss and test error against iterations and wall time, one line
per seed), ``<variant>/traces.png`` (the orthogonality |<f, L[psi_k]>| of the forcing to the
basis images and the inner/outer gradient norms over the iterations, for the first run of
``--trivial-method`` that ends trivial — else its first seed — beside ``--compare-method`` from the
same seed; Adam instead where that run diverged) and ``<variant>/solutions.png`` (002's Figs. 10-11:
the learned basis and the solutions).
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from invfem.diagnostics import trivial_verdict  # noqa: E402
from invfem.experiment.records import final_theta  # noqa: E402
from invfem.experiment.report import LOSS_CEILING, load_records, median_range, plotted_losses  # noqa: E402
from invfem.experiment.run import load_problem  # noqa: E402
from invfem.files import save_figure  # noqa: E402

COLORS = {"trust-ncg": "C0", "adam": "C1", "newton-exact": "C2", "newton-damped": "C3",
          "saddle-free-newton": "C4", "trust-exact": "C0"}
_PROBLEMS: dict = {}


def _problem(study: dict, seed: int):
    key = (study["problem"], seed, repr(sorted(study["problem_options"].items())))
    if key not in _PROBLEMS:
        _PROBLEMS[key] = load_problem(study["problem"], seed=seed, **study["problem_options"])
    return _PROBLEMS[key]


def _last_trace(record: dict, key: str):
    traces = record.get("traces") or []
    return traces[-1][key] if traces and key in traces[-1] else math.nan


def _curves(ax_iter, ax_time, records, key: str, label_once: set, ylabel: str) -> None:
    for r in records:
        if key == "f":
            it = [h["iter"] for h in r["history"]]
            tt = [h["time"] for h in r["history"]]
            yy = plotted_losses(r["history"])
        else:
            it = [t["iter"] for t in r["traces"]]
            tt = [t["time"] for t in r["traces"]]
            yy = [min(t[key], LOSS_CEILING) for t in r["traces"]]
        label = r["label"] if r["label"] not in label_once else None
        label_once.add(r["label"])
        color = COLORS.get(r["label"], None)
        ax_iter.plot([max(i, 1) for i in it], yy, color=color, lw=0.8, alpha=0.7, label=label)
        ax_time.plot(tt, yy, color=color, lw=0.8, alpha=0.7, label=label)
    for ax, xlabel in ((ax_iter, "iteration"), (ax_time, "wall time [s]")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    ax_iter.set_xscale("log")


def curves_figure(records: list, path: Path, title: str) -> None:
    """Loss and test error against iterations and wall time (one line per run)."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    _curves(axes[0, 0], axes[0, 1], records, "f", set(), "loss")
    _curves(axes[1, 0], axes[1, 1], [r for r in records if r.get("traces")], "test_error", set(), "test error")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


# -- reference 001: the heat PINN ---------------------------------------------------------------

def heat_report(folder: Path, figures: Path | None, fits: Path | None) -> None:
    study, records = load_records(folder, log=lambda *a: None)
    records = [r for r in records if not r.get("failed")]
    print("| method | iterations | wall time [s] | s / iteration | HVPs | final loss | f_PDE | f_BC | f_IC | "
          "test error (t = 1) | stopped by |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        terms = _last_trace(r, "terms")
        terms = terms if isinstance(terms, list) else [math.nan] * 3
        print(f"| {r['label']} | {r['nit']} | {r['wall_time']:.0f} | {r['wall_time'] / max(r['nit'], 1):.3f} | "
              f"{r['nhev']} | {r['loss']:.3g} | {terms[0]:.2g} | {terms[1]:.2g} | {terms[2]:.2g} | "
              f"{_last_trace(r, 'test_error'):.3g} | {r['message']} |")
    if figures is None:
        return
    figures.mkdir(parents=True, exist_ok=True)
    curves_figure(records, figures / "heat_curves.png", "reference 001's heat PINN (Fig. 5): loss and test error")
    _heat_solutions(folder, study, records, figures / "heat_solutions.png")
    runs = [("heat PINN", r) for r in records if r["method"] == "trust-ncg"]
    if fits is not None:
        for sub in sorted(p for p in fits.iterdir() if (p / "study.json").is_file()):
            _, recs = load_records(sub, log=lambda *a: None)
            runs += [(sub.name, r) for r in recs if r["method"] == "trust-ncg" and not r.get("failed")]
    _trust_region_figure(runs, figures / "heat_trust_region.png")
    print(f"\n<!-- figures in {figures} -->")


def _heat_solutions(folder: Path, study: dict, records: list, path: Path) -> None:
    seed = records[0]["seed"]
    p = _problem(study, seed)
    n = 101
    axis = torch.linspace(0, 1, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    xy = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    t = float(p.info["test_points"][0, 2])
    fem = p.info["fem_solution"]()(xy).reshape(n, n)
    panels = [("FEM (P1, invfem's heat stepper)", fem)]
    for r in records:
        theta = final_theta(folder, r["label"], r["seed"])
        with torch.no_grad():
            u = p.info["field"](theta, torch.cat([xy, torch.full((n * n, 1), t, dtype=torch.float64)], 1))
        panels.append((f"{r['label']} ({r['nit']} iterations)", u.reshape(n, n)))
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 7), constrained_layout=True)
    for k, (name, u) in enumerate(panels):
        im = axes[0, k].imshow(u, origin="lower", extent=(0, 1, 0, 1), vmin=0, vmax=1, cmap="inferno")
        axes[0, k].set_title(f"{name}, t = {t:g}", fontsize=9)
        fig.colorbar(im, ax=axes[0, k], shrink=0.8)
        if k == 0:
            axes[1, 0].axis("off")
            continue
        err = (u - fem).abs().clamp_min(1e-5)
        im = axes[1, k].imshow(err, origin="lower", extent=(0, 1, 0, 1), cmap="viridis",
                               norm=matplotlib.colors.LogNorm(vmin=1e-4, vmax=1.0))
        axes[1, k].set_title(f"|network - FEM|, max {float(err.max()):.2g}", fontsize=9)
        fig.colorbar(im, ax=axes[1, k], shrink=0.8)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _trust_region_figure(runs: list, path: Path) -> None:
    """001's Figs. 3c/3d: CG iterations per trust-region step and the radius over the iterations."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    print("\n| run | trust-region steps | CG iterations per step: median | max | radius: min | final |")
    print("|---|---|---|---|---|---|")
    for name, r in runs:
        steps = r["history"][1:]
        inner = [h.get("inner_iterations") or 0 for h in steps]
        radius = [h["radius"] for h in r["history"] if h.get("radius") is not None]
        it = [h["iter"] for h in steps]
        axes[0].plot(it, inner, lw=0.8, label=name)
        axes[1].plot(range(len(radius)), radius, lw=0.8, label=name)
        print(f"| {name} | {len(steps)} | {statistics.median(inner):.0f} | {max(inner)} | {min(radius):.3g} | "
              f"{radius[-1]:.3g} |")
    axes[0].set(xlabel="iteration", ylabel="CG iterations in the step", xscale="log",
                title="CG iterations per trust-region step (001 Fig. 3c)")
    axes[1].set(xlabel="iteration", ylabel="trust radius", yscale="log", xscale="log",
                title="trust radius (001 Fig. 3d)")
    axes[0].legend(fontsize=7)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


# -- reference 002 §4: the PINN BVPs ------------------------------------------------------------

def _verdict(study: dict, folder: Path, r: dict) -> dict:
    if r.get("failed"):                 # overflow: a non-finite Hessian at an accepted iterate
        return {"trivial": False, "saddle": False, "diverged": True, "test": math.nan, "loss": math.nan}
    p = _problem(study, r["seed"])
    theta = final_theta(folder, r["label"], r["seed"])
    loss = float(p.loss(theta))
    zero = float(torch.mean(p.info["forcing"] ** 2))         # the loss of u = 0
    if not math.isfinite(loss) or not torch.isfinite(theta).all() or loss > 10 * zero:
        return {"trivial": False, "saddle": False, "diverged": True, "test": math.nan, "loss": loss}
    points = p.info["points"]
    v = trivial_verdict(p.loss, p.kappa, theta, points, p.kappa_true(points), p.hessian(theta))
    v.update(diverged=False, test=p.info["test_error"](theta), loss=loss, zero_loss=zero)
    return v


def bvp_report(root: Path, figures: Path | None, trivial_method: str, compare_method: str) -> None:
    print("| variant | method | runs | trivial saddle | any saddle | fit (test ≤ 1e-3) | diverged | final loss | "
          "test error | iterations | wall time [s] |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in sorted(p for p in root.iterdir() if (p / "study.json").is_file()):
        study, records = load_records(folder, log=lambda *a: None)
        verdicts = {(r["label"], r["seed"]): _verdict(study, folder, r) for r in records}
        trivial_seeds = {}
        for m in study["methods"]:
            mine = [r for r in records if r["label"] == m["label"]]
            vs = [verdicts[(r["label"], r["seed"])] for r in mine]
            trivial_seeds[m["label"]] = [r["seed"] for r, v in zip(mine, vs) if v["trivial"]]
            fmt = "{:.2g}".format
            kept = [v for v in vs if not v["diverged"]]
            done = [r for r, v in zip(mine, vs) if not v["diverged"]]
            print(f"| {folder.name} | {m['label']} | {len(mine)} | {sum(v['trivial'] for v in vs)} | "
                  f"{sum(v['saddle'] for v in vs)} | {sum(v['test'] <= 1e-3 for v in kept)} | "
                  f"{len(vs) - len(kept)} | {median_range([v['loss'] for v in kept], fmt)} | "
                  f"{median_range([v['test'] for v in kept], fmt)} | "
                  f"{median_range([r['nit'] for r in done], '{:.0f}'.format)} | "
                  f"{median_range([r['wall_time'] for r in done], '{:.1f}'.format)} |")
        if figures is None:
            continue
        out = figures / folder.name
        out.mkdir(parents=True, exist_ok=True)
        records = [r for r in records if not r.get("failed")]
        curves_figure(records, out / "curves.png", f"{folder.name}: loss and test error, every seed")
        seeds = trivial_seeds.get(trivial_method) or [min(r["seed"] for r in records)]
        shown = trivial_method
        if verdicts.get((trivial_method, seeds[0]), {"diverged": True})["diverged"]:
            shown = "adam"              # every run of it diverged there: show Adam beside the trust region instead
        pair = [r for r in records if r["seed"] == seeds[0] and r["label"] in (shown, compare_method)]
        _traces_figure(pair, out / "traces.png", seeds[0])
        _solutions_figure(study, folder, pair, out / "solutions.png")
        print(f"<!-- {out}: traces and solutions of seed {seeds[0]}: {shown} and {compare_method} -->")


def _traces_figure(pair: list, path: Path, seed: int) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for r in pair:
        tr = [t for t in r.get("traces", []) if "orthogonality" in t]
        if not tr:
            continue
        it = [max(t["iter"], 1) for t in tr]
        color = COLORS.get(r["label"])
        ortho = torch.tensor([t["orthogonality"] for t in tr])
        axes[0].plot(it, ortho.max(1).values, color=color, label=f"{r['label']}: max_k")
        axes[0].plot(it, ortho.median(1).values, "--", color=color, label=f"{r['label']}: median_k")
        axes[1].plot(it, [t["gradient_split"][0] for t in tr], color=color, label=f"{r['label']}: inner")
        axes[1].plot(it, [t["gradient_split"][1] for t in tr], "--", color=color, label=f"{r['label']}: outer")
        axes[2].plot(it, [t["f"] for t in tr], color=color, label=r["label"])
    axes[0].set(xscale="log", yscale="log", xlabel="iteration", ylabel="|<f, L[psi_k]>| / (|f| |L[psi_k]|)",
                title=f"seed {seed}: orthogonality of the forcing to the basis images")
    axes[1].set(xscale="log", yscale="log", xlabel="iteration", ylabel="gradient norm",
                title="inner (hidden layers) and outer (output weights) gradient")
    axes[2].set(xscale="log", yscale="log", xlabel="iteration", ylabel="loss", title="loss")
    for ax in axes:
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _solutions_figure(study: dict, folder: Path, pair: list, path: Path) -> None:
    """The basis ``d phi_k`` and the solution of each run against the exact one (002 Figs. 10-11)."""
    p = _problem(study, pair[0]["seed"])
    field, test = p.info["field"], p.info["test_points"]
    one_d = test.shape[1] == 1
    fig, axes = plt.subplots(len(pair), 3, figsize=(14, 4 * len(pair)), constrained_layout=True, squeeze=False)
    for row, r in zip(axes, pair):
        theta = final_theta(folder, r["label"], r["seed"])
        with torch.no_grad():
            basis = field.basis(theta, test).value                  # (n, w)
            u = field(theta, test)
        exact = p.kappa_true(test)
        if one_d:
            x = test[:, 0]
            for k in range(basis.shape[1]):
                row[0].plot(x, basis[:, k], lw=1)
            row[1].plot(x, exact, "k", lw=2, label="exact")
            row[1].plot(x, u, "r--", lw=1.5, label=r["label"])
            row[1].legend(fontsize=8)
            row[2].plot(x, (u - exact).abs())
            row[2].set_yscale("log")
        else:
            n = int(round(test.shape[0] ** 0.5))
            img = lambda v: v.reshape(n, n).T
            row[0].imshow(img(basis[:, int(basis.abs().amax(0).argmax())]), origin="lower", extent=(0, 1, 0, 1))
            row[1].imshow(img(u), origin="lower", extent=(0, 1, 0, 1))
            im = row[2].imshow(img((u - exact).abs()), origin="lower", extent=(0, 1, 0, 1))
            fig.colorbar(im, ax=row[2], shrink=0.8)
        row[0].set_title(f"{r['label']} seed {r['seed']}: basis d phi_k" + ("" if one_d else " (largest)"), fontsize=9)
        row[1].set_title(f"u (test error {p.info['test_error'](theta):.2g})", fontsize=9)
        row[2].set_title("|u - u*|", fontsize=9)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heat", type=Path)
    parser.add_argument("--bvp", type=Path)
    parser.add_argument("--fits", type=Path)
    parser.add_argument("--figures", type=Path)
    parser.add_argument("--trivial-method", default="newton-damped")
    parser.add_argument("--compare-method", default="trust-exact")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    if args.heat:
        heat_report(args.heat, args.figures, args.fits)
    if args.bvp:
        bvp_report(args.bvp, args.figures, args.trivial_method, args.compare_method)


if __name__ == "__main__":
    main()

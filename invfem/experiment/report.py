"""The report of a study, rebuilt from its records alone (``invfem report OUTPUT``).

``summary.csv``: one row per run (method label, seed, loss, gnorm, nit, status, wall time,
kappa error, final eigen counts, time to the loss threshold, evaluations). ``summary.md``:
per method, the median [min, max] over seeds of each, and the figures:

- ``loss_iterations.png``, ``loss_time.png``: loss against iterations and wall time;
- ``kappa_error.png``: kappa's relative L2 error at the diagnostic points;
- ``spectra.png``: |lambda| of the exact Hessian at the end, with the eps lambda_max line;
- ``positive_eigenvalues.png``: positive-eigenvalue counts over iterations;
- ``angles.png``: cos theta1 and cos theta2 of the steps over iterations;
- ``weights.png``: CDFs of |weights| and |biases|; ``activations.png``: activation histograms;
- ``profiles.png``: the loss along the eigenvectors of lambda_min and lambda_max;
- ``kappa.png``: learned vs true kappa (maps for kappa(x), curves over u for kappa(u)).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from invfem.errors import ConfigError
from invfem.files import save_figure, write_text
from invfem.experiment.records import CorruptRecord, read_json, record_problem, run_dir
from invfem.experiment.study import study_from_dict

COLUMNS = ["method", "seed", "loss", "gnorm", "nit", "status", "wall_time", "kappa_error", "n_positive", "n_negative",
           "time_to_threshold", "iterations_to_threshold", "nfev", "njev", "nhev", "resumed", "message"]


def load_records(output: Path, log=print) -> tuple[dict, list[dict]]:
    """The study config and the finished records, in config order (unreadable ones named and skipped)."""
    output = Path(output)
    if not (output / "study.json").is_file():
        raise ConfigError(f"{output}: no study.json here (not the output folder of invfem compare)")
    study = read_json(output / "study.json")
    try:                       # the checks of a study config: keys, types and values, one line naming the bad one
        study_from_dict(study)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{output / 'study.json'}: not a study of invfem compare ({type(exc).__name__}: "
                          f"{exc})") from None
    records = []
    for m in study["methods"]:
        for seed in study["seeds"]:
            path = run_dir(output, m["label"], seed) / "record.json"
            if not path.is_file():
                continue
            try:
                record = read_json(path)
            except CorruptRecord as exc:
                log(f"{exc}; left out of the report")
                continue
            if record.get("finished") or record.get("failed"):
                problem = record_problem(record)
                if problem is not None:
                    log(f"{path}: invalid record ({problem}); left out of the report")
                    continue
                records.append(record)
    return study, records


def threshold_crossing(record: dict, threshold: float):
    """``(seconds, iteration)`` of a record's first loss ``<= threshold``, or ``(None, None)``."""
    for h in record["history"]:
        if h["f"] <= threshold:
            return h["time"], h["iter"]
    return None, None


def rows(study: dict, records: list[dict]) -> list[dict]:
    """One summary row per record."""
    out = []
    for r in records:
        if r.get("failed"):
            out.append({"method": r["label"], "seed": r["seed"], "status": "failed", "message": r["error"]})
            continue
        t, k = threshold_crossing(r, study["loss_threshold"])
        out.append({"method": r["label"], "seed": r["seed"], "loss": r["loss"], "gnorm": r["gnorm"], "nit": r["nit"],
                    "status": r["status"], "wall_time": r["wall_time"], "kappa_error": r.get("kappa_error"),
                    "n_positive": r["n_positive"], "n_negative": r["n_negative"], "time_to_threshold": t,
                    "iterations_to_threshold": k, "nfev": r["nfev"], "njev": r["njev"], "nhev": r["nhev"],
                    "resumed": len(r.get("resumed", [])), "message": r["message"]})
    return out


def write_report(output, log=print) -> Path:
    """summary.csv, summary.md and the figures of the study in ``output``."""
    output = Path(output)
    study, records = load_records(output, log)
    table = rows(study, records)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    write_text(output / "summary.csv", buffer.getvalue())
    finished = [r for r in records if not r.get("failed")]
    figures = _figures(output, study, finished) if finished else []
    write_text(output / "summary.md", _markdown(study, table, figures))
    log(f"report written to {output}/ (summary.csv, summary.md, {len(figures)} figures)")
    return output / "summary.md"


def median_range(values, fmt) -> str:
    """``"median [min, max]"`` of ``values`` (None left out), each formatted by ``fmt``; "–" if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{fmt(np.median(values))} [{fmt(min(values))}, {fmt(max(values))}]"


def _markdown(study: dict, table: list[dict], figures: list[str]) -> str:
    labels = [m["label"] for m in study["methods"]]
    sci, num = (lambda v: f"{v:.3g}"), (lambda v: f"{v:.0f}")
    lines = [f"# Study: {study['problem']}", "",
             f"Problem options: `{study['problem_options']}`; seeds {study['seeds']}; "
             f"sign counts at ±{study['eps']:g}·λmax; loss threshold {study['loss_threshold']:g}.", "",
             "Median [min, max] over seeds.", "",
             "| method | runs | final loss | κ error | iterations | wall time (s) | time to threshold (s) | "
             "iterations to threshold | λ>0 | λ<0 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    failed = [r for r in table if r["status"] == "failed"]
    table = [r for r in table if r["status"] != "failed"]
    for label in labels:
        mine = [r for r in table if r["method"] == label]
        if not mine:
            lines.append(f"| {label} | 0 | | | | | | | | |")
            continue
        reached = [r for r in mine if r["time_to_threshold"] is not None]
        col = lambda key, rows, fmt: median_range([r[key] for r in rows], fmt)     # noqa: E731
        lines.append(f"| {label} | {len(mine)} | {col('loss', mine, sci)} | {col('kappa_error', mine, sci)} | "
                     f"{col('nit', mine, num)} | {col('wall_time', mine, sci)} | "
                     f"{col('time_to_threshold', reached, sci)} ({len(reached)}/{len(mine)} reached) | "
                     f"{col('iterations_to_threshold', reached, num)} | "
                     f"{col('n_positive', mine, num)} | {col('n_negative', mine, num)} |")
    lines += [""] + [f"Failed: {r['method']} seed {r['seed']}: {r['message']}" for r in failed]
    lines += ["", "Per run: [summary.csv](summary.csv).", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------

def _figure(ncols=1, nrows=1, width=5.0, height=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows))
    FigureCanvasAgg(fig)
    return fig


def _colors(study):
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m["label"]: cmap(i % 10) for i, m in enumerate(study["methods"])}


def _save(fig, output: Path, name: str, names: list) -> None:
    fig.tight_layout()
    save_figure(fig, output / name, dpi=110)
    names.append(name)


def _legend(ax, colors, labels):
    from matplotlib.lines import Line2D

    ax.legend([Line2D([], [], color=colors[k]) for k in labels], labels, fontsize=8)


#: losses are drawn within [LOSS_FLOOR, LOSS_CEILING]: a diverging run's 1e280 (or inf) would
#: otherwise overflow a log axis's ticks; it shows as a line along the top
LOSS_FLOOR, LOSS_CEILING = 1e-300, 1e100


def plotted_losses(history: list) -> list[float]:
    """The losses of a history clipped into [LOSS_FLOOR, LOSS_CEILING] (NaN: a gap in the line)."""
    return [min(max(h["f"], LOSS_FLOOR), LOSS_CEILING) if not math.isnan(h["f"]) else math.nan for h in history]


def _figures(output: Path, study: dict, records: list[dict]) -> list[str]:
    colors, names = _colors(study), []
    labels = [m["label"] for m in study["methods"] if any(r["label"] == m["label"] for r in records)]
    fig = _figure()
    ax = fig.add_subplot()
    for r in records:
        ax.semilogy([h["iter"] for h in r["history"]], plotted_losses(r["history"]),
                    color=colors[r["label"]], lw=0.9, alpha=0.8)
    ax.set(xlabel="iteration", ylabel="loss", title=study["problem"])
    _legend(ax, colors, labels)
    _save(fig, output, "loss_iterations.png", names)
    fig = _figure()
    ax = fig.add_subplot()
    for r in records:
        ax.loglog([max(h["time"], 1e-3) for h in r["history"]], plotted_losses(r["history"]),
                  color=colors[r["label"]], lw=0.9, alpha=0.8)
    ax.axhline(study["loss_threshold"], color="0.5", ls=":", lw=0.8)
    ax.set(xlabel="wall time (s)", ylabel="loss", title=study["problem"])
    _legend(ax, colors, labels)
    _save(fig, output, "loss_time.png", names)
    points = [(r, r["diagnostics"]["points"]) for r in records if r["diagnostics"]["points"]]
    if any(p.get("kappa_error") is not None for _, pts in points for p in pts):
        fig = _figure()
        ax = fig.add_subplot()
        for r, pts in points:
            ax.semilogy([p["iter"] for p in pts], [p["kappa_error"] for p in pts], "o-", ms=2,
                        color=colors[r["label"]], lw=0.9)
        ax.set(xlabel="iteration", ylabel="relative L2 error of κ")
        _legend(ax, colors, labels)
        _save(fig, output, "kappa_error.png", names)
    _spectra(output, study, records, colors, labels, names)
    if points:
        fig = _figure()
        ax = fig.add_subplot()
        for r, pts in points:
            ax.plot([p["iter"] for p in pts], [p["n_positive"] for p in pts], "o-", ms=2, color=colors[r["label"]],
                    lw=0.9)
        ax.set(xlabel="iteration", ylabel=f"eigenvalues > {study['eps']:g} λmax")
        _legend(ax, colors, labels)
        _save(fig, output, "positive_eigenvalues.png", names)
        with_angles = [(r, [p for p in pts if "cos_theta1" in p]) for r, pts in points]
        if any(pts for _, pts in with_angles):
            fig = _figure(ncols=2)
            for i, key in enumerate(("cos_theta1", "cos_theta2")):
                ax = fig.add_subplot(1, 2, i + 1)
                for r, pts in with_angles:
                    ax.plot([p["iter"] for p in pts], [p[key] for p in pts], "-", color=colors[r["label"]], lw=0.9)
                    for indefinite, marker in ((False, "o"), (True, "x")):
                        mine = [p for p in pts if bool(p.get("indefinite")) == indefinite]
                        ax.plot([p["iter"] for p in mine], [p[key] for p in mine], marker, ms=3 if indefinite else 2,
                                color=colors[r["label"]], ls="none")
                ax.set(xlabel="iteration", ylabel=key.replace("_theta", " θ"), ylim=(-1.05, 1.05),
                       title="× : H indefinite at the step's start" if i == 1 else None)
                _legend(ax, colors, labels)
            _save(fig, output, "angles.png", names)
    _network(output, records, colors, labels, names)
    _kappa(output, study, records, labels, names)
    return names


def _first_seed(records, labels):
    return [next(r for r in records if r["label"] == label) for label in labels]


def _spectra(output, study, records, colors, labels, names):
    fig = _figure(ncols=len(labels), width=3.6)
    for i, label in enumerate(labels):
        ax = fig.add_subplot(1, len(labels), i + 1)
        for r in (r for r in records if r["label"] == label):
            eig = np.array(r["diagnostics"]["final"]["eigenvalues"])
            order = np.arange(eig.size)
            ax.semilogy(order[eig > 0], eig[eig > 0], ".", ms=2, color=colors[label])
            ax.semilogy(order[eig < 0], -eig[eig < 0], "x", ms=2, color="k")
            ax.axhline(study["eps"] * np.abs(eig).max(), color="0.5", ls=":", lw=0.8)
        ax.set(title=label, xlabel="index (ascending λ)", ylabel="|λ| (× : λ < 0)")
    _save(fig, output, "spectra.png", names)


def _network(output, records, colors, labels, names):
    firsts = [r for r in _first_seed(records, labels) if "magnitudes" in r["diagnostics"]["final"]]
    if not firsts:
        return
    fig = _figure(ncols=2)
    for i, key in enumerate(("weights", "biases")):
        ax = fig.add_subplot(1, 2, i + 1)
        for r in records:
            m = r["diagnostics"]["final"].get("magnitudes")
            if m and m[key]:
                ax.semilogx(np.maximum(m[key], 1e-12), m[f"{key}_cdf"], color=colors[r["label"]], lw=0.9, alpha=0.8)
        ax.set(xlabel={"weights": "|weight|", "biases": "|bias|"}[key], ylabel="CDF")
        _legend(ax, colors, labels)
    _save(fig, output, "weights.png", names)
    with_acts = [r for r in firsts if "activations" in r["diagnostics"]["final"]]
    if with_acts:
        fig = _figure(ncols=2)
        for i, key in enumerate(("at_point", "all_points")):
            ax = fig.add_subplot(1, 2, i + 1)
            for r in with_acts:
                acts = r["diagnostics"]["final"]["activations"]
                same_bins = len({len(h["counts"]) for h in acts[key]}) == 1
                counts = np.sum([h["counts"] for h in acts[key]], axis=0) if same_bins \
                    else np.array(acts[key][0]["counts"])
                edges = np.array(acts[key][0]["edges"])
                ax.stairs(counts / max(counts.sum(), 1), edges, color=colors[r["label"]])
            where = f"at x = {tuple(with_acts[0]['diagnostics']['final']['activations']['point'])}" \
                if key == "at_point" else "over all quadrature points"
            ax.set(xlabel="hidden activation", ylabel="fraction", title=where)
            _legend(ax, colors, [r["label"] for r in with_acts])
        _save(fig, output, "activations.png", names)
    fig = _figure(ncols=2)
    for i, key in enumerate(("min", "max")):
        ax = fig.add_subplot(1, 2, i + 1)
        for r in _first_seed(records, labels):
            prof = r["diagnostics"]["final"]["profiles"]
            ax.plot(prof["alphas"], prof[f"f_{key}"], color=colors[r["label"]])
        ax.set(xlabel="α", ylabel="L(θ* + α v)", title=f"along the eigenvector of λ{key}", yscale="log")
        _legend(ax, colors, labels)
    _save(fig, output, "profiles.png", names)


def _kappa(output, study, records, labels, names):
    firsts = [r for r in _first_seed(records, labels) if r["diagnostics"]["final"].get("kappa")]
    if not firsts:
        return
    first = firsts[0]["diagnostics"]["final"]["kappa"]
    if first["input"] == "u":
        fig = _figure()
        ax = fig.add_subplot()
        colors = _colors(study)
        for r in firsts:
            k = r["diagnostics"]["final"]["kappa"]
            ax.plot(np.array(k["points"])[:, 0], k["learned"], color=colors[r["label"]], label=r["label"])
        if first["true"] is not None:
            ax.plot(np.array(first["points"])[:, 0], first["true"], "k--", label="true")
        ax.set(xlabel="u", ylabel="κ(u)", title="learned vs true κ (first seed)")
        ax.legend(fontsize=8)
        _save(fig, output, "kappa.png", names)
        return
    panels = [(r["label"], r["diagnostics"]["final"]["kappa"]["learned"]) for r in firsts]
    if first["true"] is not None:
        panels.append(("true", first["true"]))
    xy, tri = np.array(first["points"]), np.array(first["triangles"])
    values = np.concatenate([np.asarray(v) for _, v in panels])
    fig = _figure(ncols=len(panels), width=3.2, height=3.0)
    for i, (title, v) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        image = ax.tripcolor(xy[:, 0], xy[:, 1], tri, np.asarray(v), shading="gouraud", vmin=values.min(),
                             vmax=values.max())
        ax.set(title=title, aspect="equal", xticks=[], yticks=[])
        fig.colorbar(image, ax=ax, shrink=0.8)
    _save(fig, output, "kappa.png", names)

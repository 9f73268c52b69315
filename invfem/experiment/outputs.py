"""What a run leaves besides results.json: the learned law, fields for ParaView and kappa's plot.

For one seed with parameters ``theta`` (the files are named ``<kind>_seed<k>``):

- ``kappa_seed<k>.pt``: the law with its network description (:func:`invfem.load_kappa`);
- ``fields_seed<k>.vtu``: the mesh with u_theta, kappa, kappa_true (when known), u_obs and
  the misfit (nodal observations), kappa's Laplace statistics (when computed): sample mean /
  std / 95% band, and the linearized std / band (``*_linearized``); for heat the same names,
  u_theta (and u_obs) being the final state;
- ``observations_seed<k>.vtu``: the observation points with u_obs, u_theta and the misfit
  (heat: one vertex per observation, with its time ``t``);
- ``states_seed<k>.xdmf``: heat's time series of u_theta (u_obs for residual losses); the
  static fields are in the VTU. ``meshio.read`` opens single-step files only: read it with
  ``meshio.xdmf.TimeSeriesReader`` (``read_points_cells()``, then ``read_data(k)`` per step);
- ``kappa_seed<k>.png``: learned vs true kappa (and the band width, with Laplace).

A joint problem of several experiments (:func:`invfem.joint.joint_problem`) writes the
fields, observation and state files once per experiment, named ``..._seed<k>_<name>``, and
one ``kappa_seed<k>`` (.pt, .png) for the shared law.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from invfem.fem.export import write_points, write_time_series, write_vtu
from invfem.files import save_figure
from invfem.law import save_kappa
from invfem.nn import MLP


def write_outputs(problem, theta: torch.Tensor, out: Path, seed: int, laplace=None,
                  failures: dict | None = None) -> list[Path]:
    """Write the files above that apply to ``problem`` (each atomically); returns their paths.

    ``failures``: a dict that receives ``file name -> "Error: message"`` for each file that could
    not be written, the others being written all the same; without it the first failure raises."""
    written = []

    def attempt(name: str, write):
        result = attempt_or_record(failures, name, write)
        if isinstance(result, Path):
            written.append(result)
        return result

    kind = problem.info.get("kappa_input", "x")
    if isinstance(problem.kappa, MLP) and problem.kappa.widths[-1] == 1:
        attempt(f"kappa_seed{seed}.pt", lambda: save_kappa(out / f"kappa_seed{seed}.pt", problem.kappa, theta, kind,
                                                          problem=problem.name, seed=seed))
    experiments = problem.info.get("experiments")
    if experiments:                   # one set of fields per experiment, one plot of the shared law
        states, offset = [], 0
        total = sum(e["problem"].info["space"].n_dofs for e in experiments)
        for e in experiments:
            n = e["problem"].info["space"].n_dofs
            part = laplace
            if laplace is not None and kind == "u" and laplace.mean.shape == (total,):
                part = laplace.restricted(slice(offset, offset + n))        # this experiment's u values
            offset += n
            done, state = _write_fields(e["problem"], theta, out, f"seed{seed}_{e['name']}", part, attempt)
            states.append(state)
        u = torch.cat([s.reshape(-1) for s in states]) if kind == "u" and all(s is not None for s in states) else None
        if kind == "x" or u is not None:
            attempt(f"kappa_seed{seed}.png",
                    lambda: plot_kappa(out / f"kappa_seed{seed}.png", problem, theta, u, laplace))
        return written
    if problem.fields is None or problem.info.get("space") is None:
        return written
    done, state = _write_fields(problem, theta, out, f"seed{seed}", laplace, attempt)
    if done:
        attempt(f"kappa_seed{seed}.png",
                lambda: plot_kappa(out / f"kappa_seed{seed}.png", problem, theta, state, laplace))
    return written


def _write_fields(problem, theta, out: Path, stem: str, laplace, attempt) -> tuple[bool, torch.Tensor | None]:
    """``fields_<stem>.vtu`` (heat: the final state, and ``states_<stem>.xdmf``) and
    ``observations_<stem>.vtu`` of one experiment; returns whether its fields were computed and
    the nodal state kappa(u) is evaluated at."""
    kind = problem.info.get("kappa_input", "x")
    space = problem.info["space"]
    fields = attempt(f"fields ({stem})", lambda: problem.fields(theta))
    if fields is None:
        return False, None
    nodal = attempt(f"nodal kappa fields ({stem})",
                    lambda: _nodal_kappa_fields(problem, theta, fields, kind, laplace)) or {}
    points = fields.pop("_points", None)
    fields.pop("kappa", None)
    if "times" in fields:
        times = fields.pop("times")
        attempt(f"states_{stem}.xdmf",                # the states only: kappa & co are in the VTU, once
                lambda: write_time_series(out / f"states_{stem}.xdmf", space, times, fields))
        attempt(f"fields_{stem}.vtu", lambda: write_vtu(out / f"fields_{stem}.vtu", space,
                                                       {**{k: v[-1] for k, v in fields.items()}, **nodal}))
    else:
        attempt(f"fields_{stem}.vtu", lambda: write_vtu(out / f"fields_{stem}.vtu", space, {**fields, **nodal}))
    if points is not None:
        locations = points.pop("points")
        attempt(f"observations_{stem}.vtu", lambda: write_points(out / f"observations_{stem}.vtu", locations, points))
    return True, state_of(fields)


def attempt_or_record(failures: dict | None, name: str, work):
    """``work()``; where it raises, ``failures[name] = "Error: message"`` and None (the other
    outputs still get made), or the exception itself when ``failures`` is None."""
    try:
        return work()
    except Exception as exc:  # one output or post-training phase: keep the rest, say which failed
        if failures is None:
            raise
        failures[name] = f"{type(exc).__name__}: {exc}"
        return None


def state_of(fields: dict) -> torch.Tensor | None:
    """The nodal state kappa(u) is evaluated at: u_theta, or the observed full field (residual losses)."""
    return fields.get("u_theta", fields.get("u_obs"))


def _nodal_kappa_fields(problem, theta, fields, kind, laplace) -> dict:
    """kappa_theta, kappa_true and the Laplace statistics, one value per dof."""
    space = problem.info["space"]
    inputs = space.dof_coordinates if kind == "x" else state_of(fields).reshape(-1)[:, None]
    with torch.no_grad():
        out = {"kappa": problem.kappa(theta, inputs)}
        if problem.kappa_true is not None:
            out["kappa_true"] = problem.kappa_true(inputs)
    if laplace is not None and laplace.mean.shape == (space.n_dofs,):
        out.update(kappa_mean=laplace.mean, kappa_std=laplace.std, kappa_lower=laplace.lower,
                   kappa_upper=laplace.upper, kappa_band=laplace.band_width,
                   kappa_std_linearized=laplace.std_linearized, kappa_lower_linearized=laplace.lower_linearized,
                   kappa_upper_linearized=laplace.upper_linearized, kappa_band_linearized=laplace.band_width_linearized)
    return out


def _relative_error(values: dict) -> float | None:
    """||kappa - true|| / ||true|| over the plotted points, None without a true law."""
    if "true" not in values:
        return None
    return float(torch.linalg.norm(values["kappa"] - values["true"]) / torch.linalg.norm(values["true"]))


def plot_kappa(path: Path, problem, theta: torch.Tensor, u_theta=None, laplace=None) -> Path:
    """Learned vs true kappa: maps over the mesh for kappa(x), curves over u for kappa(u)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kind = problem.info.get("kappa_input", "x")
    space = problem.info["space"]
    if kind == "u":
        fig = Figure(figsize=(5.5, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        u = u_theta.reshape(-1) if u_theta is not None else laplace.points
        s = torch.linspace(float(u.min()), float(u.max()), 201, dtype=torch.float64, device=theta.device)
        with torch.no_grad():
            ax.plot(s.cpu(), problem.kappa(theta, s[:, None]).cpu(), label=r"learned $\kappa_\theta(u)$")
            if problem.kappa_true is not None:
                ax.plot(s.cpu(), problem.kappa_true(s[:, None]).cpu(), "k--", label=r"true $\kappa(u)$")
        if laplace is not None:
            order = torch.argsort(laplace.points.reshape(-1))
            u_sorted = laplace.points.reshape(-1)[order].cpu()
            ax.fill_between(u_sorted, laplace.lower[order].cpu(), laplace.upper[order].cpu(), alpha=0.2,
                            label="95% band, Laplace samples")
            ax.fill_between(u_sorted, laplace.lower_linearized[order].cpu(), laplace.upper_linearized[order].cpu(),
                            alpha=0.4, label="95% band, linearized")
        ax.set_xlabel("u")
        ax.set_ylabel(r"$\kappa$")
        if problem.kappa_true is not None:
            with torch.no_grad():
                error = _relative_error({"kappa": problem.kappa(theta, s[:, None]), "true": problem.kappa_true(s[:, None])})
            ax.set_title(f"relative L2 error of kappa over the range of u: {error:.2%}", fontsize=9)
        ax.legend()
    else:
        panels = [("learned $\\kappa_\\theta$", "kappa")]
        vertex = space.basis.nodal_dofs[0]
        xy = space.dof_coordinates[vertex]
        with torch.no_grad():
            values = {"kappa": problem.kappa(theta, xy)}
            if problem.kappa_true is not None:
                values["true"] = problem.kappa_true(xy)
                values["error"] = (values["kappa"] - values["true"]).abs()
                panels += [("true $\\kappa$", "true"), ("$|\\kappa_\\theta - \\kappa|$", "error")]
        if laplace is not None and laplace.band_width.shape == (space.n_dofs,):
            values["band_linearized"] = laplace.band_width_linearized[vertex]
            values["band"] = laplace.band_width[vertex]
            panels += [("95% band width, linearized", "band_linearized"), ("95% band width, samples", "band")]
        fig = Figure(figsize=(3.6 * len(panels), 3.3))
        FigureCanvasAgg(fig)
        x, y = space.mesh.p
        shared = [float(min(values[k].min() for k in ("kappa", "true") if k in values)),
                  float(max(values[k].max() for k in ("kappa", "true") if k in values))]
        for i, (title, key) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            limits = shared if key in ("kappa", "true") else (None, None)
            image = ax.tripcolor(x, y, space.mesh.t.T, values[key].cpu().numpy(), shading="gouraud",
                                 vmin=limits[0], vmax=limits[1])
            fig.colorbar(image, ax=ax, shrink=0.8)
            points = problem.info.get("observation_points")
            if i == 0 and points is not None:
                points = np.asarray(points)
                ax.plot(points[:, 0], points[:, 1], "k.", markersize=2)
            ax.set_title(title, fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlabel("x", fontsize=8, labelpad=1)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_ylabel("y", fontsize=8, labelpad=1)
        error = _relative_error(values)
        if error is not None:
            fig.suptitle(f"relative L2 error of kappa at the mesh vertices: {error:.2%}", fontsize=9)
        # fixed margins: tight_layout would draw the figure once more just to measure it
        fig.subplots_adjust(left=0.05, right=0.97, bottom=0.13, top=0.84, wspace=0.25)
    if kind == "u":
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    return save_figure(fig, path, dpi=110)

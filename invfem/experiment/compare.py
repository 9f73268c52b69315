"""``invfem compare``: every (method, seed) run of a study, resumable, serial or in parallel.

Layout of ``OUTPUT``::

    study.json                       the validated config (what ``invfem report`` rebuilds from)
    runs/<label>-seed<k>/record.json the finished run: settings, history, status, diagnostics
    runs/<label>-seed<k>/theta.pt    its final theta (float64 tensor)
    runs/<label>-seed<k>/checkpoint.pt   while it runs: the optimizer's state and the diagnostics so far
    runs/<label>-seed<k>/progress.json   while it runs: iteration, loss, |g| (for the progress bars)
    summary.csv, summary.md, *.png   the report (:mod:`invfem.experiment.report`)

Every file is written atomically. Re-running the same command skips finished runs and
continues unfinished ones from their last checkpoint (exactly, for trust-region, Newton,
Adam and invfem's BFGS); a record or checkpoint that cannot be read is named and its run
redone, and no other file is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from invfem.derivatives import value_and_grad
from invfem.errors import ConfigError
from invfem.files import check_writable, save_torch, write_json
from invfem.resources import check_dense_hessian
from invfem.experiment.records import CorruptRecord, folder_lock, load_torch, read_json, record_problem, run_dir
from invfem.experiment.regularization import auto_spec, choose_regularization, plot_regularization, with_alpha
from invfem.experiment.stopping import DiscrepancyStop
from invfem.experiment.study import StudyConfig, study_from_dict

PROGRESS_SECONDS = 1.0           # how often a running run reports its iteration


def _cores() -> int:
    """The cores this process may use (its CPU affinity: what SLURM or taskset gave it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _fingerprint(study: dict, spec: dict, seed: int) -> str:
    """What a run's result depends on: a checkpoint of another setting is not resumed, and a
    run stopped by a ``time_limit`` or ``stop_loss`` is not finished for a study without them
    (they enter only where set, so records written before they counted stay valid)."""
    stops = {name: value for name, value in (("time_limit", spec.get("time_limit")),
                                             ("stop_loss", study.get("stop_loss")),
                                             ("stop", study.get("stop"))) if value is not None}
    key = json.dumps([study["problem"], study["problem_options"], study["device"], spec["method"], spec["options"],
                      seed] + ([spec["stages"]] if spec.get("stages") else []) + ([stops] if stops else []),
                     sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def finished_record(folder: Path, log=print, fingerprint: str | None = None) -> dict | None:
    """The finished record of a run, or None: absent; unreadable, incomplete, failed last time,
    or (with ``fingerprint``) written for other settings — each of those named in the log."""
    path = folder / "record.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except CorruptRecord as exc:
        log(f"{exc}; rerunning that run")
        return None
    if record.get("failed"):
        log(f"{path}: the last attempt failed ({record.get('error')}); retrying")
        return None
    if not record.get("finished") or not (folder / "theta.pt").is_file():
        log(f"{path}: incomplete record; rerunning that run")
        return None
    problem = record_problem(record, folder)
    if problem is not None:
        log(f"{path}: invalid record ({problem}); rerunning that run")
        return None
    if fingerprint is not None and record.get("fingerprint", fingerprint) != fingerprint:
        log(f"{path}: written for other settings (problem, method options or seed changed); rerunning that run")
        return None
    return record


# ---------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------

class _Tracker:
    """The callback of a run: progress file, time limit, and diagnostics every K iterations."""

    def __init__(self, problem, hessian, study: StudyConfig, folder: Path, diagnostics: list, pending, time_limit,
                 traces: list | None = None):
        self.problem, self.hessian, self.study, self.folder = problem, hessian, study, folder
        self.diagnostics, self.pending, self.time_limit = diagnostics, pending, time_limit
        self.traces = [] if traces is None else traces
        self.stopped_by_time = False
        self.reached_stop_loss = False
        self.discrepancy = DiscrepancyStop(problem, study.stop["discrepancy"]) if study.stop else None
        self._last_progress = 0.0

    def point(self, k: int, theta: torch.Tensor) -> None:
        """Diagnostics at iteration k; the angles of the next step taken are filled in later."""
        from invfem.diagnostics import kappa_error, saturation, spectrum
        from invfem.diagnostics.network import hidden_activations

        h = self.hessian(theta)
        s = spectrum(h, self.study.eps)
        entry = {"iter": k, **{key: s[key] for key in ("n_positive", "n_negative", "n_zero", "lambda_min",
                                                       "lambda_max")}}
        entry["kappa_error"] = kappa_error(self.problem, theta)
        mlp = self.problem.kappa
        if hasattr(mlp, "layers"):
            points = _activation_points(self.problem, theta)
            if points is not None:
                entry["saturation"] = saturation(mlp, hidden_activations(mlp, theta, points))
        self.diagnostics.append(entry)
        self.pending = theta.detach().clone()

    def trace(self, k: int, state_time: float, f: float, theta: torch.Tensor) -> None:
        """The problem's cheap per-iterate numbers (``info["traces"]``: name -> ``theta ->`` a number
        or a list of numbers, e.g. a test error, an orthogonality per basis function) at iteration k."""
        entry = {"iter": k, "time": float(state_time), "f": float(f)}
        for name, fn in (self.problem.info.get("traces") or {}).items():
            value = fn(theta)
            entry[name] = [float(v) for v in value] if isinstance(value, (list, tuple, torch.Tensor)) else float(value)
        self.traces.append(entry)

    def angles(self, theta: torch.Tensor) -> None:
        """cos theta1/theta2 of the step from the pending point to ``theta``."""
        from invfem.diagnostics import step_angles

        start = self.pending
        self.pending = None
        _, g = value_and_grad(self.problem.loss, start)
        angles = step_angles(theta - start, g, self.hessian(start), rcond=self.study.eps)
        self.diagnostics[-1].update(angles)

    def __call__(self, state) -> bool:
        k, x = state["iter"], state["x"]
        now = time.perf_counter()
        if now - self._last_progress >= PROGRESS_SECONDS:
            write_json(self.folder / "progress.json", {"iter": k, "f": state["f"], "gnorm": state["gnorm"],
                                                        "time": state["time"]})
            self._last_progress = now
        if self.pending is not None and state.get("accepted") is not False and (state.get("step_norm") or 0) > 0:
            self.angles(x)
        every = self.study.diagnostics_every
        if every and k % every == 0:
            self.point(k, x)
        if self.study.trace_every and k % self.study.trace_every == 0 and \
                (not self.traces or self.traces[-1]["iter"] < k):
            self.trace(k, state["time"], state["f"], x)
        if self.time_limit is not None and state["time"] >= self.time_limit:
            self.stopped_by_time = True
            return True
        if self.study.stop_loss is not None and state["f"] <= self.study.stop_loss:
            self.reached_stop_loss = True
            return True
        if self.discrepancy is not None and self.discrepancy(state):
            return True
        return False


def _activation_points(problem, theta):
    from invfem.diagnostics import law_points
    from invfem.diagnostics.errors import has_law_points

    return law_points(problem, theta)[0] if has_law_points(problem) else None


def run_one(study_dict: dict, label: str, seed: int, threads: int | None = None) -> dict:
    """Run (or resume, or skip) one (method, seed) of a study; returns its record.

    A top-level function of plain arguments: joblib and dask send it to their workers.
    """
    threads = threads or _cores()
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float64)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _run_one(study_dict, label, seed)


def _run_one(study_dict: dict, label: str, seed: int) -> dict:
    study = study_from_dict(study_dict)
    spec = next(m for m in study.methods if m.label == label)
    spec_dict = next(m for m in study_dict["methods"] if m["label"] == label)
    folder = run_dir(study.output, label, seed)
    fingerprint = _fingerprint(study_dict, spec_dict, seed)
    existing = finished_record(folder, log=lambda *a: None, fingerprint=fingerprint)
    if existing is not None:
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    try:
        try:
            return _attempt(study, study_dict, spec, folder, fingerprint, label, seed)
        except Exception as exc:
            checkpoint = folder / "checkpoint.pt"
            if not checkpoint.is_file():
                raise
            # resuming may be what failed (a checkpoint of another version with the same settings):
            # set it aside and start afresh once, rather than failing on every invocation
            aside = folder / "checkpoint.pt.unusable"
            os.replace(checkpoint, aside)
            return _attempt(study, study_dict, spec, folder, fingerprint, label, seed,
                            notes=[f"resuming {checkpoint} failed ({type(exc).__name__}: {exc}); set aside as "
                                   f"{aside.name}, started afresh"])
    except Exception as exc:  # recorded: one failing run (a bad seed, a non-elliptic start) does not stop a study
        record = {"label": label, "method": spec.method, "options": spec.options, "seed": seed,
                  "problem": study.problem, "problem_options": study.problem_options, "fingerprint": fingerprint,
                  "failed": True, "finished": False, "error": f"{type(exc).__name__}: {exc}"}
        write_json(folder / "record.json", record)
        (folder / "progress.json").unlink(missing_ok=True)
        return record


def _attempt(study: StudyConfig, study_dict: dict, spec, folder: Path, fingerprint: str, label: str, seed: int,
             notes: list | None = None) -> dict:
    from invfem.diagnostics.low_rank import low_rank_hessian
    from invfem.experiment.run import DEFAULT_RANK, LOW_RANK_ABOVE, load_problem
    from invfem.optim import Checkpoint
    from invfem.structured import hessian_path

    resume, diagnostics, pending, resumed, traces = None, [], None, [], []
    notes = list(notes or [])
    checkpoint_path = folder / "checkpoint.pt"
    if checkpoint_path.is_file():
        try:
            saved = load_torch(checkpoint_path)
            if not isinstance(saved, dict) or not isinstance(saved.get("optimizer"), dict) or \
                    not isinstance(saved.get("diagnostics"), list):
                notes.append(f"{checkpoint_path}: not a checkpoint of this version (malformed); started afresh")
            elif saved.get("fingerprint") != fingerprint:
                notes.append(f"{checkpoint_path}: written for other settings; started afresh")
            else:
                resume, diagnostics = saved["optimizer"], list(saved["diagnostics"])
                pending, traces = saved.get("pending"), list(saved.get("traces", []))
                state = resume.get("inner", resume)                 # a chain's: its current stage's
                done = sum(int(d["nit"]) for d in resume.get("done", []))
                resumed = list(saved.get("resumed", [])) + [{"iteration": done + int(state["iteration"]),
                                                              "exact": bool(state["exact"])}]
        except (CorruptRecord, KeyError, TypeError, ValueError, AttributeError) as exc:
            notes.append(f"{checkpoint_path}: {exc}; started afresh")
            resume, diagnostics, pending, resumed, traces = None, [], None, [], []
    device = {} if study.device is None else {"device": study.device}
    options, auto = study.problem_options, auto_spec(study.problem_options)
    selection = None
    if auto is not None:               # alpha chosen first (and kept beside the run: a resumed run reuses it)
        selection = _chosen_regularization(study, spec, seed, folder, fingerprint, auto, device)
        options = with_alpha(options, selection["chosen"])
    problem = load_problem(study.problem, seed=seed, **device, **options)
    path = hessian_path(problem, chunk_size=study.hessian_chunk)
    exact_hessian = path.function
    if problem.n_params > LOW_RANK_ABOVE:       # no P x P matrix: the diagnostics take dominant eigenpairs from HVPs
        exact_hessian = lambda theta: low_rank_hessian(problem, theta, DEFAULT_RANK, seed=seed)
    else:
        check_dense_hessian(problem.n_params, "a study's diagnostics (spectra at the checkpoints and at the end)")
    tracker = _Tracker(problem, exact_hessian, study, folder, diagnostics,
                       None if pending is None else torch.as_tensor(pending), spec.time_limit, traces)
    if resume is None and study.diagnostics_every:
        tracker.point(0, problem.theta0)
    if resume is None and study.trace_every:
        tracker.trace(0, 0.0, float(problem.loss(problem.theta0)), problem.theta0)

    def save(state):
        save_torch(checkpoint_path, {"fingerprint": fingerprint, "optimizer": state, "diagnostics": tracker.diagnostics,
                                     "pending": tracker.pending, "resumed": resumed, "traces": tracker.traces})

    checkpoint = Checkpoint(save, every=study.checkpoint_every, seconds=study.checkpoint_seconds)
    result = _train(problem, spec, problem.theta0, path, callback=tracker, checkpoint=checkpoint,
                    resume=resume)
    message = result.message
    if tracker.stopped_by_time:
        message = f"wall-time limit of {spec.time_limit:g} s reached"
    elif tracker.reached_stop_loss:
        message = f"loss <= stop_loss {study.stop_loss:g} reached"
    elif tracker.discrepancy is not None and tracker.discrepancy.reached:
        message = tracker.discrepancy.message
    record = {"label": label, "method": spec.method, "options": spec.options, "seed": seed,
              "problem": study.problem, "problem_options": study.problem_options, "fingerprint": fingerprint,
              "status": int(result.status),
              "message": message, "success": bool(result.success), "loss": float(result.fun),
              "gnorm": float(result.optimality), "nit": int(result.nit), "nfev": int(result.nfev),
              "njev": int(result.njev), "nhev": int(result.nhev), "wall_time": float(result.history[-1]["time"]),
              "resumed": resumed, "notes": notes, "history": result.history}
    if study.trace_every:
        if not tracker.traces or tracker.traces[-1]["iter"] < int(result.nit):
            tracker.trace(int(result.nit), result.history[-1]["time"], float(result.fun), result.x)
        record["traces"] = tracker.traces
    if tracker.discrepancy is not None:
        record["discrepancy"] = tracker.discrepancy.summary()
    if selection is not None:
        record["regularization"] = selection
    if spec.stages:
        record["stages"] = result.stages
    record["diagnostics"] = {"points": tracker.diagnostics,
                             "final": final_diagnostics(problem, result.x, exact_hessian, study)}
    final = record["diagnostics"]["final"]
    record.update(kappa_error=final.get("kappa_error"), n_positive=final["n_positive"],
                  n_negative=final["n_negative"])
    save_torch(folder / "theta.pt", result.x.detach().cpu())
    record["finished"] = True
    write_json(folder / "record.json", record)
    checkpoint_path.unlink(missing_ok=True)
    (folder / "progress.json").unlink(missing_ok=True)
    return record


def _train(problem, spec, x0: torch.Tensor, path, maxiter: int | None = None, **extra):
    """``spec``'s method (or its chain of stages) on ``problem`` from ``x0`` with ``path``'s exact
    derivatives (a :class:`~invfem.structured.HessianPath`: the dense Hessian for the dense methods,
    its product for the Krylov ones); ``maxiter`` overrides a single method's budget; ``extra``:
    callback, checkpoint, resume."""
    from invfem.optim import METHODS, minimize, minimize_chain

    common = dict(bounds=problem.bounds, residual=problem.residual, residual_jacobian=problem.solver_jacobian, **extra)
    if spec.stages:
        return minimize_chain(problem.loss, x0, spec.stages, hess=path.function, hessp=path.hessp, **common)
    options = spec.options if maxiter is None else {**spec.options, "maxiter": maxiter}
    return minimize(problem.loss, x0, method=spec.method, options=options,
                    **path.minimize_arguments(METHODS[spec.method].derivatives), **common)


def _chosen_regularization(study: StudyConfig, spec, seed: int, folder: Path, fingerprint: str, auto, device) -> dict:
    """``regularization: auto`` for one run: alpha chosen by the run's own method
    (:func:`invfem.experiment.regularization.choose_regularization`), the selection written to
    ``regularization.json`` (reused by a resumed run with the same settings) and drawn in
    ``regularization.png``."""
    from invfem.experiment.run import load_problem
    from invfem.structured import hessian_path

    path = folder / "regularization.json"
    if path.is_file():
        try:
            saved = read_json(path)
            if saved.get("fingerprint") == fingerprint and isinstance(saved.get("selection"), dict):
                return saved["selection"]
        except (OSError, CorruptRecord):
            pass                                      # unreadable: chosen again

    selection = choose_regularization(
        lambda alpha: load_problem(study.problem, seed=seed, **device, **with_alpha(study.problem_options, alpha)),
        lambda problem, x0: _train(problem, spec, x0, hessian_path(problem, chunk_size=study.hessian_chunk),
                                   maxiter=auto.maxiter), auto)
    try:
        plot_regularization(folder / "regularization.png", selection, f"{spec.label}, seed {seed}")
        selection["figure"] = "regularization.png"
    except Exception as exc:  # the figure only: the choice stands
        selection["figure_error"] = f"{type(exc).__name__}: {exc}"
    write_json(path, {"fingerprint": fingerprint, "selection": selection})
    return selection


def final_diagnostics(problem, theta: torch.Tensor, hessian, study: StudyConfig) -> dict:
    """Everything reference 000 looks at, at the end of a run (``hessian(theta)``: the dense matrix,
    or its dominant eigenpairs above :data:`~invfem.experiment.run.LOW_RANK_ABOVE` parameters)."""
    from invfem.diagnostics import (activation_histograms, eigen_profiles, kappa_error, magnitudes, network_loss,
                                    spectrum)

    h = hessian(theta)
    out = spectrum(h, study.eps)
    out["kappa_error"] = kappa_error(problem, theta)
    out["profiles"] = eigen_profiles(problem.loss, theta, h, np.linspace(-1.0, 1.0, 41))
    mlp = problem.kappa
    if hasattr(mlp, "layers"):
        out["magnitudes"] = magnitudes(mlp, theta)
        points = _activation_points(problem, theta)
        if points is not None:
            point = torch.tensor(study.activation_point if points.shape[1] == 2 else
                                 [float(points[:, 0].mean())], dtype=torch.float64, device=theta.device)
            out["activations"] = activation_histograms(mlp, theta, point, points)
    net = network_loss(problem, theta) if "rank" not in out else None     # (its spectrum: a dense P x P matrix)
    if net is not None:
        s = spectrum(net.hessian(theta), study.eps)
        out["network_loss"] = {"value": float(net(theta)), **s}
    out["kappa"] = kappa_values(problem, theta)
    return out


def kappa_values(problem, theta: torch.Tensor) -> dict | None:
    """kappa_theta (and kappa_true) where the report plots them: the mesh vertices for kappa(x),
    201 values over the range of u for kappa(u)."""
    if "space" not in problem.info or not callable(problem.kappa):
        return None
    space = problem.info["space"]
    with torch.no_grad():
        if problem.info.get("kappa_input", "x") == "u":
            from invfem.diagnostics import law_points
            s = law_points(problem, theta)[0]
        else:
            s = space.dof_coordinates[space.basis.nodal_dofs[0]]
        learned = problem.kappa(theta, s)
        true = problem.kappa_true(s) if problem.kappa_true is not None else None
    out = {"input": problem.info.get("kappa_input", "x"), "points": s.cpu().numpy().tolist(),
           "learned": learned.cpu().numpy().tolist(), "true": None if true is None else true.cpu().numpy().tolist()}
    if out["input"] == "x":
        out["triangles"] = space.mesh.t.T.tolist()
    return out


# ---------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------

def compare(study: StudyConfig, workers: int | None = None, scheduler: str | None = None, executor: str | None = None,
            quiet: bool = False, log=print) -> list[dict]:
    """Run every (method, seed) of ``study`` that is not finished yet; then write the report.

    ``executor`` (default: the config's; ``processes`` when ``workers`` > 1, ``dask`` with a
    ``scheduler`` address) runs the runs serially, in a joblib process pool, or on a
    dask-distributed cluster (a LocalCluster of ``workers`` when no address is given). Returns
    the records in config order (methods, then seeds). The output folder is locked while it
    runs (:func:`~invfem.experiment.records.folder_lock`): a second ``compare`` on it stops with
    a message naming the holder.
    """
    output = Path(study.output)
    check_writable(output)
    with folder_lock(output, "invfem compare", log=log):
        return _compare(study, output, workers, scheduler, executor, quiet, log)


def _compare(study: StudyConfig, output: Path, workers, scheduler, executor, quiet, log) -> list[dict]:
    from invfem.experiment.report import write_report

    workers = workers or study.workers
    scheduler = scheduler or study.scheduler
    executor = executor or ("dask" if scheduler else "processes" if workers > 1 and study.executor == "serial"
                            else study.executor)
    study_dict = study.as_dict()
    write_json(output / "study.json", study_dict)
    say = (lambda *a: None) if quiet else log
    todo, records = [], {}
    specs = {m["label"]: m for m in study_dict["methods"]}
    for spec, seed in study.runs():
        done = finished_record(run_dir(output, spec.label, seed), log=say,
                               fingerprint=_fingerprint(study_dict, specs[spec.label], seed))
        if done is not None:
            records[(spec.label, seed)] = done
        else:
            todo.append((spec.label, seed))
    if records:
        say(f"{len(records)} of {len(study.runs())} runs already finished: skipped")
    if workers > max(1, len(todo)):          # each worker is a process with its own torch: never more than runs
        say(f"workers {workers} capped at {max(1, len(todo))}: the runs left to do")
        workers = max(1, len(todo))
    if workers > _cores() and executor != "dask":
        say(f"warning: {workers} workers on {_cores()} cores: runs will compete for them (timings slow down)")
    if study.threads_per_run or not (executor == "dask" and scheduler):
        threads = study.threads_per_run or max(1, _cores() // max(1, workers if executor != "serial" else 1))
    else:
        threads = None          # a remote worker takes the cores it is given (its CPU affinity)
    results: dict = {}
    errors: list = []
    runner = threading.Thread(target=_execute, args=(executor, study_dict, todo, workers, scheduler, threads, results,
                                                     errors), daemon=True)
    runner.start()
    try:
        _watch(runner, study, todo, results, quiet, say)
        runner.join()
    except KeyboardInterrupt:     # Ctrl-C: stop the worker processes too (their checkpoints are kept)
        if executor != "serial":
            _stop_children()
        raise
    if errors:
        raise errors[0]
    for key in todo:
        records[key] = results[key]
    ordered = [records[(spec.label, seed)] for spec, seed in study.runs()]
    write_report(output, log=say)
    return ordered


def _execute(executor, study_dict, todo, workers, scheduler, threads, results, errors) -> None:
    """Run the ``todo`` runs (in a background thread: the main thread shows the progress)."""
    try:
        if executor == "serial":
            for label, seed in todo:
                results[(label, seed)] = run_one(study_dict, label, seed, threads)
        elif executor == "processes":
            from joblib import Parallel, delayed

            jobs = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")(
                delayed(_keyed)(study_dict, label, seed, threads) for label, seed in todo)
            for key, record in jobs:
                results[key] = record
        else:
            _execute_dask(study_dict, todo, workers, scheduler, threads, results)
    except BaseException as exc:  # re-raised in the main thread
        errors.append(exc)


def _stop_children() -> None:
    """SIGTERM every child process of this one (the joblib/dask workers of an interrupted study):
    left alone they would go on writing to the study folder after ``invfem compare`` has exited.
    Linux (``/proc``); elsewhere a no-op."""
    import signal

    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == me:                 # field 4 of stat: the parent's pid
                os.kill(int(entry), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            continue


def _keyed(study_dict, label, seed, threads):
    return (label, seed), run_one(study_dict, label, seed, threads)


#: how long to wait for a dask scheduler to answer before saying it does not
DASK_CONNECT_SECONDS = 10


def _execute_dask(study_dict, todo, workers, scheduler, threads, results) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_SECONDS)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: no dask scheduler answered within {DASK_CONNECT_SECONDS} s "
                              f"({type(exc).__name__}: {exc})") from None
    try:
        futures = {client.submit(run_one, study_dict, label, seed, threads, pure=False): (label, seed)
                   for label, seed in todo}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _watch(runner: threading.Thread, study: StudyConfig, todo, results: dict, quiet: bool, say) -> None:
    """Progress bars of finished runs and of the running ones (from their progress files)."""
    if quiet or not todo:
        while runner.is_alive():
            runner.join(0.2)
        return
    from tqdm import tqdm

    total = tqdm(total=len(todo), desc="runs", unit="run", position=0, dynamic_ncols=True)
    bars: dict = {}
    reported = set()
    maxiter = {m.label: m.maxiter for m in study.methods}
    try:
        while True:
            alive = runner.is_alive()
            for key in todo:
                if key in results and key not in reported:
                    reported.add(key)
                    total.update(1)
                    if key in bars:
                        bars.pop(key).close()
                    say(_line(results[key]))
                elif key not in results:
                    progress = run_dir(study.output, *key) / "progress.json"
                    try:
                        state = json.loads(progress.read_text())
                    except (OSError, ValueError):
                        continue
                    if key not in bars:
                        bars[key] = tqdm(total=maxiter[key[0]], desc=f"{key[0]} seed {key[1]}", unit="it",
                                         position=len(bars) + 1, leave=False, dynamic_ncols=True)
                    bar = bars[key]
                    bar.n = int(state["iter"])
                    bar.set_postfix(loss=f"{state['f']:.3e}", g=f"{state['gnorm']:.2e}", refresh=False)
                    bar.refresh()
            if not alive:
                break
            runner.join(0.5)
    finally:
        for bar in bars.values():
            bar.close()
        total.close()


def _line(record: dict) -> str:
    if record.get("failed"):
        return f"[{record['label']} seed {record['seed']}] FAILED: {record['error']}"
    kappa = "" if record.get("kappa_error") is None else f", kappa error {record['kappa_error']:.3e}"
    resumed = f", resumed at iteration {record['resumed'][-1]['iteration']}" if record.get("resumed") else ""
    return (f"[{record['label']} seed {record['seed']}] {record['message']}: loss {record['loss']:.6e}, "
            f"|g| {record['gnorm']:.3e}, {record['nit']} iterations, {record['wall_time']:.1f} s{kappa}, "
            f"eigenvalues {record['n_positive']}+ / {record['n_negative']}-{resumed}")


"""Issue 18 (nothing lost, strict input): each test reproduces one reported defect."""

import os
import stat

import pytest

from invfem.errors import ConfigError
from invfem.experiment import compare, load_study
from invfem.experiment.config import read_yaml
from invfem.files import save_torch, write_json

STUDY = """
problem: poisson_fem
problem_options: {{n: 3, widths: [2, 4, 1]}}
seeds: [0]
maxiter: 4
diagnostics_every: 0
threads_per_run: 1
methods:
  - {{method: adam, options: {{lr: 0.01}}{extra}}}
output: {output}
{top}
"""


def _study(tmp_path, name, extra="", top=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(output=tmp_path / "out", extra=extra, top=top))
    return load_study(path)


def test_item6_a_run_stopped_by_a_time_limit_or_stop_loss_is_redone_without_it(tmp_path):
    """The fingerprint holds time_limit and stop_loss: a run cut short by them is not 'finished'
    for a study without them (and a finished run is not redone when they are unchanged)."""
    cut = compare(_study(tmp_path, "cut", extra=", time_limit: 1.0e-9"), quiet=True)[0]
    assert cut["nit"] < 4
    full = compare(_study(tmp_path, "full"), quiet=True)[0]
    assert full["nit"] == 4
    again = compare(_study(tmp_path, "full"), quiet=True)[0]
    assert again["nit"] == 4 and again.get("time") == full.get("time")          # skipped: the same record
    stopped = compare(_study(tmp_path, "stop", top="stop_loss: 1.0e+9"), quiet=True)[0]
    assert stopped["nit"] < 4                                                     # redone with the stop
    assert compare(_study(tmp_path, "full2"), quiet=True)[0]["nit"] == 4


def test_item1_workers_are_capped_at_the_runs_to_do(tmp_path, monkeypatch):
    import importlib

    cmp = importlib.import_module("invfem.experiment.compare")

    seen = {}

    def execute(executor, study_dict, todo, workers, *rest):
        seen["workers"] = workers
        return real(executor, study_dict, todo, workers, *rest)

    real = cmp._execute
    monkeypatch.setattr(cmp, "_execute", execute)
    messages = []
    compare(_study(tmp_path, "many"), workers=1000, log=messages.append)
    assert seen["workers"] == 1                       # one run to do: one worker, not 1000 processes
    assert any("workers" in m and "1000" in m for m in messages)


def test_item8_duplicate_keys_and_alias_bombs_are_refused_with_their_line(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("problem: poisson_fem\nseeds: [0]\nproblem: heat\n")
    with pytest.raises(ConfigError, match=r"dup.yaml.*duplicate key 'problem' \(line 3"):
        read_yaml(dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text("a:\n  b: 1\n  c: 2\n  b: 3\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'b' \(line 4"):
        read_yaml(nested)
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bomb.yaml.*aliases expand to more than"):
        read_yaml(bomb)
    fine = tmp_path / "fine.yaml"
    fine.write_text("base: &b {lr: 0.01}\nmethods:\n  - {method: adam, options: *b}\n  - {method: bfgs}\n")
    assert read_yaml(fine)["methods"][0]["options"] == {"lr": 0.01}          # small anchors still work


def test_item11_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        for path in (write_json(tmp_path / "r.json", {"a": 1}), save_torch(tmp_path / "t.pt", {"a": 1})):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        os.umask(0o077)
        assert stat.S_IMODE(write_json(tmp_path / "private.json", {}).stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("method", ["trust-exact", "newton-damped", "trust-ncg"])
def test_item5_every_trial_nan_is_no_success_and_the_trials_are_counted(method):
    """A loss defined only at x0 (NaN at every other point): the run may not report convergence,
    and each NaN trial counts in invalid_trials."""
    import torch

    from invfem.optim import minimize

    x0 = torch.tensor([0.3, -0.2, 1.1], dtype=torch.float64)

    def loss(x):
        value = ((x - 1.0) ** 2).sum()
        return torch.where((x - x0).abs().max() > 0, torch.full_like(value, float("nan")), value)

    result = minimize(loss, x0, method=method, options={"maxiter": 60})
    assert not result.success, (method, result.status, result.message)
    assert result.history[-1]["invalid_trials"] > 0
    assert "not finite" in result.message or "invalid" in result.message
    assert torch.equal(result.x, x0)


def test_item5_newton_exact_on_a_linear_loss_is_no_success():
    import torch

    from invfem.optim import minimize

    result = minimize(lambda x: x.sum(), torch.zeros(3, dtype=torch.float64), method="newton-exact",
                      options={"maxiter": 20})
    assert float(result.jac.norm()) == pytest.approx(3 ** 0.5)
    assert not result.success, (result.status, result.message)


def test_item7_a_second_compare_on_a_held_folder_stops_and_a_stale_lock_is_taken_over(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from invfem.errors import FolderInUse

    study = _study(tmp_path, "locked")
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".invfem.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "since": "earlier"}))
        with pytest.raises(FolderInUse, match=rf"in use by invfem compare \(pid {holder.pid} on host"):
            compare(study, quiet=True)
        assert not (out / "runs").exists()                    # nothing was run twice
    finally:
        holder.kill()
        holder.wait()
    messages = []
    records = compare(study, log=messages.append)             # the holder is gone: its lock is stale
    assert records[0]["nit"] == 4 and any("stale lock" in m for m in messages)
    assert not lock.exists()                                  # released after the study
    lock.write_text(json.dumps({"host": "another-host", "pid": 1, "since": "earlier"}))
    with pytest.raises(FolderInUse, match="another-host"):  # another machine's lock is respected
        compare(study, quiet=True)


@pytest.mark.parametrize("options,match", [({"n": 2.7}, "n .* whole number, got 2.7"), ({"n": True}, "whole number, got True"),
                                           ({"order": True}, "order must be one of")])
def test_item14_fractional_and_boolean_sizes_are_refused(options, match):
    from invfem.errors import InvfemError
    from invfem.experiment.run import load_problem

    with pytest.raises(InvfemError, match=match):
        load_problem("poisson_fem", seed=0, **options)


def test_item14_lshape_refine_and_config_meshes_take_whole_numbers_only():
    from invfem.errors import InvfemError
    from invfem.problems import poisson

    with pytest.raises(InvfemError, match="refine must be a whole number, got 1.5"):
        poisson.make_problem(0, mesh={"lshape": {"refine": 1.5}}, network={"widths": [3]},
                             observations={"synthetic": {"kappa_true": "1 + x", "at": "nodes"}})
    p = poisson.make_problem(0, mesh={"unit_square": {"n": 3.0}}, network={"widths": [3]},
                             observations={"synthetic": {"kappa_true": "1 + x", "at": "nodes"}})
    assert p.info["n_dofs"] == 16                                   # 3.0 is a whole number


@pytest.mark.parametrize("line,match", [("stop_loss: .nan", "stop_loss must be a number"),
                                        ("methods: [{method: adam, label: null}]", "label must be a name")])
def test_item14_nan_stop_loss_and_null_label_are_refused(tmp_path, line, match):
    text = STUDY.format(output=tmp_path / "out", extra="", top=line)
    if line.startswith("methods"):
        text = text.replace("methods:\n  - {method: adam, options: {lr: 0.01}}\n", "")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_study(path)


@pytest.mark.parametrize("workers", [1, 2])
def test_item10_ctrl_c_during_compare_exits_130_without_abort_or_traceback(tmp_path, workers):
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "long.yaml"
    config.write_text(STUDY.format(output=tmp_path / "out", extra="", top="").replace("maxiter: 4", "maxiter: 100000")
                      .replace("seeds: [0]", "seeds: [0, 1]"))
    import os

    # its own process group, signalled as a terminal's Ctrl-C signals it: every process in it
    proc = subprocess.Popen([sys.executable, "-m", "invfem.cli", "compare", str(config), "--workers", str(workers),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "out").glob("runs/*/progress.json")):
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
        time.sleep(3.0)
        left = True
        try:
            os.killpg(proc.pid, 0)                       # any process of the group still alive?
        except ProcessLookupError:
            left = False
        assert not left, "worker processes outlived the interrupted compare"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)          # nothing left behind, whatever happened
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "terminate called" not in err, err[-2000:]
    assert "interrupted" in err
    assert not (tmp_path / "out" / ".invfem.lock").exists()


def test_item4_records_and_checkpoints_that_parse_but_are_wrong_are_redone(tmp_path):
    import json

    import torch

    from invfem.experiment import write_report

    study = _study(tmp_path, "records")
    first = compare(study, quiet=True)[0]
    run = tmp_path / "out" / "runs" / "adam-seed0"
    record = json.loads((run / "record.json").read_text())
    # a record that parses but lacks 'loss': report and compare used to die with KeyError
    (run / "record.json").write_text(json.dumps({k: v for k, v in record.items() if k != "loss"}))
    messages = []
    write_report(tmp_path / "out", log=messages.append)
    assert any("invalid record" in m and "'loss'" in m for m in messages)
    again = compare(study, log=messages.append)[0]
    assert again["loss"] == pytest.approx(first["loss"], rel=1e-12)
    # a truncated theta.pt beside a good record used to count as finished forever
    data = (run / "theta.pt").read_bytes()
    (run / "theta.pt").write_bytes(data[: len(data) // 2])
    messages.clear()
    compare(study, log=messages.append)
    assert any("invalid record" in m and "theta.pt" in m for m in messages)
    size = torch.load(run / "theta.pt").numel()
    assert size > 0
    # a theta.pt of another size (another network) is not this run's result
    torch.save(torch.zeros(size + 1, dtype=torch.float64), run / "theta.pt")
    messages.clear()
    compare(study, log=messages.append)
    assert any(f"theta.pt holds {size + 1} parameters, the run's Hessian had {size}" in m for m in messages)
    assert torch.load(run / "theta.pt").numel() == size
    # a checkpoint that loads but is not one (a list) used to fail the run on every invocation
    (run / "record.json").unlink()
    torch.save([1, 2, 3], run / "checkpoint.pt")
    redone = compare(study, quiet=True)[0]
    assert redone.get("finished") and not redone.get("failed")
    assert any("malformed" in n for n in redone["notes"])


def test_item4_a_checkpoint_of_the_same_settings_that_cannot_be_resumed_is_set_aside(tmp_path):
    import json

    study = _study(tmp_path, "resume")
    compare(study, quiet=True)
    run = tmp_path / "out" / "runs" / "adam-seed0"
    fingerprint = json.loads((run / "record.json").read_text())["fingerprint"]
    (run / "record.json").unlink()
    state = {"method": "adam", "iteration": 2, "exact": True, "from": "another version"}   # parses, cannot resume
    save_torch(run / "checkpoint.pt", {"fingerprint": fingerprint, "optimizer": state, "diagnostics": []})
    redone = compare(study, quiet=True)[0]
    assert redone.get("finished") and not redone.get("failed"), redone.get("error")
    assert any("set aside" in n for n in redone["notes"]) and (run / "checkpoint.pt.unusable").is_file()


# ---------------------------------------------------------------------------------------
# items 2 and 3: invfem run keeps every finished seed, writes atomically, checks the config first
# ---------------------------------------------------------------------------------------

RUN = """
problem: poisson_fem
problem_options: {{n: 3{problem_extra}}}
method: trust-exact
options: {{maxiter: 3}}
seeds: {seeds}
output: {output}
{top}
"""


def _run_config(tmp_path, seeds="[0]", problem_extra="", top="", name="run"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(RUN.format(output=tmp_path / "out", seeds=seeds, problem_extra=problem_extra, top=top))
    return path


def test_item2_a_failing_seed_is_recorded_and_the_others_are_kept(tmp_path, capsys):
    import json

    from invfem.cli import main

    assert main(["run", str(_run_config(tmp_path, seeds="[0, 3, 1]")), "--quiet"]) == 1   # seed 3: kappa <= 0 at theta0
    err = capsys.readouterr().err
    assert "seed 3 failed in its setup: NonPositiveCoefficientError" in err
    out = tmp_path / "out"
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 3, 1]
    assert runs[1]["failed"] and "NonPositiveCoefficientError" in runs[1]["error"]
    assert runs[0]["nit"] == 3 and runs[2]["nit"] == 3
    for name in ("theta_seed0.pt", "theta_seed1.pt", "kappa_seed0.pt", "fields_seed1.vtu", "loss.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "theta_seed3.pt").exists()


def test_item2_a_failure_after_training_keeps_the_trained_result(tmp_path, monkeypatch, capsys):
    import json

    import torch

    import invfem.experiment.outputs as outputs
    from invfem.cli import main

    def broken(*args, **kwargs):
        raise ValueError("the VTU writer failed")

    monkeypatch.setattr(outputs, "write_vtu", broken)
    assert main(["run", str(_run_config(tmp_path, seeds="[0, 1]")), "--quiet"]) == 1
    assert "seed 0: fields_seed0.vtu failed: ValueError: the VTU writer failed" in capsys.readouterr().err
    out = tmp_path / "out"
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["nit"] for r in runs] == [3, 3]
    assert runs[0]["failures"] == {"fields_seed0.vtu": "ValueError: the VTU writer failed"}
    assert "hessian_end" in runs[0] and "kappa_error" in runs[0]
    assert torch.load(out / "theta_seed1.pt").shape[0] > 0
    for name in ("kappa_seed0.pt", "kappa_seed0.png", "loss.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "fields_seed0.vtu").exists()


def test_item2_laplace_without_a_prior_is_refused_before_training(tmp_path, capsys):
    from invfem.cli import main

    config = _run_config(tmp_path, top="laplace_samples: 20")
    assert main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invfem: error: laplace_samples: 20 needs a prior") and "regularization" in err
    assert not (tmp_path / "out" / "theta_seed0.pt").exists()                  # no training was spent
    prior = tmp_path / "prior.yaml"
    prior.write_text("problem: poisson\nproblem_options: {mesh: {unit_square: {n: 3}}, network: {widths: [3]}, "
                     "regularization: 1.0e-4, observations: {synthetic: {kappa_true: '1 + x', at: nodes}}}\n"
                     f"options: {{maxiter: 5}}\nlaplace_samples: 20\noutput: {tmp_path / 'prior'}\n")
    assert main(["run", str(prior), "--quiet"]) == 0


def test_item13_run_into_an_unwritable_folder_is_one_line_before_any_work(tmp_path, capsys):
    from invfem.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = _run_config(tmp_path)
    assert main(["run", str(config), "--output", str(blocker / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invfem: error: output folder") and "not writable" in err and err.count("\n") == 1


def test_item13_nan_theta0_with_the_start_hessian_is_a_named_failure(tmp_path, capsys):
    import json

    from invfem.cli import main

    problem = tmp_path / "nan_problem.py"
    problem.write_text("import dataclasses, torch\nfrom invfem.problems import poisson_fem\n"
                       "def make_problem(seed=0):\n    p = poisson_fem.make_problem(seed=seed, n=3, widths=[2, 4, 1])\n"
                       "    return dataclasses.replace(p, theta0=torch.full_like(p.theta0, float('nan')))\n")
    config = tmp_path / "nan.yaml"
    config.write_text(f"problem: {problem}\nmethod: trust-exact\noptions: {{maxiter: 2}}\nhessian_at_start: true\n"
                      f"output: {tmp_path / 'out'}\n")
    assert main(["run", str(config), "--quiet"]) == 1
    assert "theta0 of poisson_fem (seed 0) holds NaN or inf" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]["failed"]


def _readable(path):
    """Every kind of file invfem writes, read back (raises where it is unreadable)."""
    import json

    import meshio
    import torch
    from PIL import Image

    if path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".pt":
        torch.load(path, weights_only=True)
    elif path.suffix in (".vtu", ".xdmf"):
        if path.suffix == ".vtu":
            meshio.read(path)
        else:
            import xml.etree.ElementTree as ET
            ET.parse(path)
    elif path.suffix == ".png":
        Image.open(path).verify()
    elif path.suffix in (".csv", ".md"):
        path.read_text()
    return path.read_bytes()


def _disk_fills_after(monkeypatch, n_writes):
    """The n-th atomic write on (0-based) fails with ENOSPC halfway through its data."""
    import errno

    import invfem.files as files

    real = files.atomic_path
    count = {"n": 0}
    import contextlib

    @contextlib.contextmanager
    def filling(path):
        with real(path) as tmp:
            yield tmp
            count["n"] += 1
            if count["n"] > n_writes:
                size = tmp.stat().st_size
                with open(tmp, "r+b") as f:
                    f.truncate(size // 2)
                raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files, "atomic_path", filling)
    return count


@pytest.mark.parametrize("n_writes", [0, 3, 7])
def test_item3_a_full_disk_during_invfem_run_leaves_every_earlier_file_readable(tmp_path, monkeypatch, n_writes):
    from invfem.cli import main

    config = _run_config(tmp_path, seeds="[0, 1]")
    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet"]) == 0
    before = {p.name: _readable(p) for p in out.iterdir()}
    assert {"theta_seed0.pt", "kappa_seed1.pt", "fields_seed0.vtu", "results.json", "loss.png"} <= set(before)
    with monkeypatch.context() as patch:
        _disk_fills_after(patch, n_writes)
        try:
            code = main(["run", str(config), "--quiet"])
        except OSError:
            code = None
        assert code != 0
    after = {p.name: _readable(p) for p in out.iterdir()}                     # nothing half-written
    assert set(before) <= set(after) and not [p for p in after if p.endswith(".tmp") or ".tmp." in p]
    assert main(["run", str(config), "--quiet"]) == 0                          # the rerun completes
    assert {p.name for p in out.iterdir()} == set(before)


def test_item3_a_full_disk_during_a_study_and_its_report(tmp_path, monkeypatch):
    from invfem.experiment import write_report

    path = tmp_path / "disk.yaml"
    path.write_text(STUDY.format(output=tmp_path / "out", extra="", top="").replace("seeds: [0]", "seeds: [0, 1]"))
    study = load_study(path)
    out = tmp_path / "out"
    first = compare(study, quiet=True)
    files = lambda: {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()}
    before = {name: _readable(p) for name, p in files().items()}
    assert {"summary.csv", "summary.md", "study.json"} <= set(before)
    for n_writes in (0, 2):
        with monkeypatch.context() as patch:
            _disk_fills_after(patch, n_writes)
            with pytest.raises(OSError):
                write_report(out, log=lambda m: None)
        assert {name: _readable(p) for name, p in files().items()} == before   # the old report, whole
    (out / "runs" / "adam-seed1" / "record.json").unlink()                      # a run to redo
    with monkeypatch.context() as patch:
        _disk_fills_after(patch, 1)
        with pytest.raises(OSError):
            compare(study, quiet=True)
    for name, p in files().items():
        _readable(p)
    again = compare(study, quiet=True)                                          # the rerun completes
    assert [r["loss"] for r in again] == [r["loss"] for r in first]


# ---------------------------------------------------------------------------------------
# item 12: a resumed run's bookkeeping is the uninterrupted run's
# ---------------------------------------------------------------------------------------

RESUMABLE = """
problem: poisson_fem
problem_options: {{n: 3, widths: [2, 6, 1]}}
seeds: [0]
maxiter: 16
diagnostics_every: 4
checkpoint_every: 4
threads_per_run: 1
methods:
  - {{method: {method}}}
output: {output}
"""


def _resumable(tmp_path, name, method, interrupt_at=None, interrupt=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(RESUMABLE.format(method=method, output=tmp_path / name))
    study = load_study(path)
    if interrupt_at is not None:
        interrupt(study, interrupt_at)
    return compare(study, quiet=True)[0]


@pytest.mark.parametrize("method", ["trust-exact", "newton-damped", "l-bfgs-b"])
def test_item12_a_resumed_run_counts_and_diagnoses_as_the_uninterrupted_one(tmp_path, interrupt_compare, method):
    whole = _resumable(tmp_path, "whole", method)
    resumed = _resumable(tmp_path, "resumed", method, interrupt_at=9, interrupt=interrupt_compare)
    assert resumed["resumed"] and resumed["resumed"][0]["iteration"] == 8
    points = lambda r: [p["iter"] for p in r["diagnostics"]["points"]]
    assert points(resumed) == points(whole) == [0, 4, 8, 12, 16]      # l-bfgs-b lost 8 (its checkpoint iteration)
    if resumed["resumed"][0]["exact"]:
        for key in ("nit", "nfev", "njev", "nhev"):                   # trust-exact counted one more Hessian per resume
            assert resumed[key] == whole[key], key


def test_item12_scipy_methods_count_each_gradient_once():
    """njev is the number of points the loss was evaluated at: scipy asks again for x0 and for its
    final x, which invfem already has (njev was off by one or two)."""
    import torch

    from invfem.optim import minimize

    points = []

    def loss(x):
        points.append(tuple(x.detach().tolist()))
        return ((x - torch.arange(4.0)) ** 2 * torch.arange(1.0, 5.0)).sum() + (x ** 4).sum()

    for method in ("l-bfgs-b", "scipy-bfgs"):
        points.clear()
        result = minimize(loss, torch.zeros(4, dtype=torch.float64), method=method, options={"maxiter": 30})
        assert result.njev == len(points) == len(set(points)), method


# ---------------------------------------------------------------------------------------
# items 13, 14, 15, 9: bad input is one line naming it, before any work; sizes checked first
# ---------------------------------------------------------------------------------------

def _run_error(tmp_path, capsys, text, *extra, command="run"):
    """``invfem run`` (or ``compare``) on a config (text or bytes): exit 2, one line, no traceback."""
    from invfem.cli import main

    config = tmp_path / "bad.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main([command, str(config), "--quiet", "--output", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("invfem: error:") and "\n" not in err and "Traceback" not in err, err
    assert not list(tmp_path.rglob("theta*.pt")), "trained before failing"
    return err


def _poisson(observations: str, mesh: str = "{lshape: {refine: 1}}", extra: str = "") -> str:
    return (f"problem: poisson\nproblem_options:\n  mesh: {mesh}\n  network: {{widths: [3]}}\n"
            f"  observations: {observations}\n{extra}options: {{maxiter: 2}}\n")


SYNTHETIC = "{synthetic: {kappa_true: '1 + x^2', at: 5}}"


@pytest.mark.parametrize("raw,expected", [
    ("problem: poisson_fem  # café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 1)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not UTF-8 text"),
    ("problem: poisson_fem\nseeds: [0]\nproblem_options: {n: 0}\n".encode("utf-16"), "n (cells per direction) must be >= 1"),
])
def test_item13_config_encodings(tmp_path, capsys, raw, expected):
    assert expected in _run_error(tmp_path, capsys, raw)


def _npz(path, **arrays):
    import numpy as np

    np.savez(path, **arrays)
    return path


def test_item13_14_15_observation_files(tmp_path, capsys):
    import numpy as np

    n = 4
    good = {"x": np.full(n, -0.5), "y": np.linspace(-0.5, 0.5, n), "u": np.zeros(n)}
    files = {
        "latin1.csv": (b"x,y,u\n-0.5,-0.5,0.1 # \xe9\n", "not UTF-8 text (byte 0xe9"),
        "utf16.csv": ("x,y,u\n-0.5,-0.5,0.1\n".encode("utf-16"), "not UTF-8 text (byte 0xff"),
        "binary.csv": (bytes(range(256)), "not UTF-8 text"),
        "text.csv": (b"x,y,u\n-0.5,-0.5,0.1\n\n-0.5,0.5,abc\n", "line 4, column u: 'abc' is not a number"),
        "empty.csv": (b"x,y,u\n-0.5,-0.5,0.1\n-0.5,,0.2\n", "line 3, column y: an empty cell"),
        "short.csv": (b"x,y,u\n-0.5,-0.5,0.1\n-0.5,0.2\n", "line 3: 2 values but the header names 3 columns"),
        "nanline.csv": (b"x,y,u\n\n-0.5,-0.5,0.1\n\n-0.5,0.5,nan\n", "line 5: u is nan"),          # file lines
        "duplicate.csv": (b"x,y,u,u\n-0.5,-0.5,0.1,0.2\n", "column(s) ['u'] named more than once"),
        "outside.csv": (b"x,y,u\n-0.5,-0.5,0.1\n0.5000000001,0.5,0.1\n",
                        "line 3: observation point (0.5000000001, 0.5) lies outside the mesh"),
    }
    for name, (data, expected) in files.items():
        (tmp_path / name).write_bytes(data)
        assert expected in _run_error(tmp_path, capsys, _poisson(str(tmp_path / name))), name
    npz = {
        "unequal.npz": ({**good, "u": np.zeros(n + 1)}, "the arrays differ in length"),
        "twod.npz": ({**good, "u": np.zeros((n, 1))}, "array 'u' has shape (4, 1); each column must be a 1-d array"),
        "shapes.npz": ({**good, "x": np.zeros((2, 2))}, "array 'x' has shape (2, 2)"),
        "strings.npz": ({**good, "u": np.array(["a"] * n)}, "array 'u' holds <U1 values, not numbers"),
        "complex.npz": ({**good, "u": np.zeros(n, dtype=complex)}, "array 'u' holds complex numbers"),
    }
    for name, (arrays, expected) in npz.items():
        _npz(tmp_path / name, **arrays)
        assert expected in _run_error(tmp_path, capsys, _poisson(str(tmp_path / name))), name
    (tmp_path / "notzip.npz").write_bytes(b"PK\x03\x04 truncated")
    assert "not a readable .npz file" in _run_error(tmp_path, capsys, _poisson(str(tmp_path / "notzip.npz")))


def test_item15_a_bom_header_and_float_times_are_read(tmp_path):
    from invfem.fem.observations import read_observations

    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffx,y,u\n-0.5,-0.5,0.1\n".encode())
    assert read_observations(bom).values.tolist() == [0.1]
    from invfem.problems import heat

    timed = tmp_path / "timed.csv"
    timed.write_text("t,x,y,u\n0.30000000000000004,0.5,0.5,0.1\n0.3,0.25,0.5,0.2\n0.1,0.5,0.5,0.0\n")
    p = heat.make_problem(0, mesh={"unit_square": {"n": 4}}, network={"widths": [3]}, dt=0.1, n_steps=3,
                          observations=str(timed))
    assert p.info["observed_steps"].tolist() == [3, 3, 1]
    timed.write_text("t,x,y,u\n0.1,0.5,0.5,0.1\n0.25,0.25,0.5,0.2\n")
    with pytest.raises(ConfigError, match=r"timed.csv: line 3: t = 0.25 is not on the step grid"):
        heat.make_problem(0, mesh={"unit_square": {"n": 4}}, network={"widths": [3]}, dt=0.1, n_steps=3,
                          observations=str(timed))


def _mesh_file(path, p, t):
    import meshio
    import numpy as np

    meshio.write(path, meshio.Mesh(np.column_stack([p.T, np.zeros(p.shape[1])]), [("triangle", t.T)]))
    return path


def test_item13_14_15_broken_meshes(tmp_path, capsys):
    import numpy as np
    import skfem

    m = skfem.MeshTri.init_lshaped().refined(1)
    p, t = m.p.copy(), m.t.copy()
    nan = p.copy()
    nan[1, 2] = np.nan
    folded = p.copy()
    inner = np.setdiff1d(np.arange(p.shape[1]), m.boundary_nodes())[0]
    folded[:, inner] += 0.3
    flat_p = np.column_stack([p, [[5.0, 6.0, 7.0], [0.0, 0.0, 0.0]]])
    flat_t = np.column_stack([t, [[p.shape[1]], [p.shape[1] + 1], [p.shape[1] + 2]]])
    cases = {"nan.vtu": (nan, t, "node 3 has coordinates (0.0, nan)"),
             "folded.vtu": (folded, t, "overlap (both lie on the same side of their shared edge"),
             "twice.vtu": (p, np.column_stack([t, t[:, 5]]), "appears more than once"),
             "flat.vtu": (flat_p, flat_t, f"triangle {t.shape[1] + 1} (nodes {p.shape[1] + 1}, {p.shape[1] + 2}, "
                                          f"{p.shape[1] + 3}) has zero area")}
    for name, (pp, tt, expected) in cases.items():
        path = _mesh_file(tmp_path / name, pp, tt)
        assert expected in _run_error(tmp_path, capsys, _poisson(SYNTHETIC, mesh=str(path))), name
    err = _run_error(tmp_path, capsys, _poisson(SYNTHETIC, mesh="{rectangle: {n: 2, m: 2, x: [0, 1, 2]}}"))
    assert "x must be two finite numbers [low, high], got [0, 1, 2]" in err


@pytest.mark.parametrize("formula,expected", [
    ("1/0", "1 / 0 cannot be evaluated (float division by zero)"),
    ("9**9**9", "cannot be evaluated ((34, 'Numerical result out of range'))"),
    ("sin(x, y)", "sin takes 1 argument, got 2"),
    ("min()", "min takes 2 arguments, got 0"),
    ("+".join(["x"] * 1000), "nests 1001 operations deep"),
    ("x" * 5000, "is 5000 characters long"),
    ("log(x - 2)", "is not finite at x in [0.1, 0.9]"),
])
def test_item13_formulas_fail_at_check_time(tmp_path, capsys, formula, expected):
    err = _run_error(tmp_path, capsys, _poisson(SYNTHETIC, extra=f"  source: '{formula}'\n"))
    assert "problem_options.source: formula" in err and expected in err


@pytest.mark.parametrize("option,expected", [
    ("  source: .nan\n", "problem_options.source: expected a finite number"),
    ("  dirichlet: .nan\n", "problem_options.dirichlet: expected a finite number"),
])
def test_item15_nan_options_are_named(tmp_path, capsys, option, expected):
    assert expected in _run_error(tmp_path, capsys, _poisson(SYNTHETIC, extra=option))


def test_item15_nan_sigma_and_kappa_true_are_named(tmp_path, capsys):
    csv = tmp_path / "obs.csv"
    csv.write_text("x,y,u\n-0.5,-0.5,0.1\n")
    assert "problem_options.observations.sigma must be a number > 0, got nan" in \
        _run_error(tmp_path, capsys, _poisson(f"{{file: {csv}, sigma: .nan}}"))
    assert "problem_options.observations.synthetic.kappa_true: expected a finite number" in \
        _run_error(tmp_path, capsys, _poisson("{synthetic: {kappa_true: .nan, at: 5}}"))


@pytest.mark.parametrize("law,kind,expected", [("x - 0.5", "x", "kappa_true is -"), ("-1", "x", "kappa_true is -1"),
                                               ("u - 10", "u", "kappa_true is -")])
def test_item14_synthetic_data_from_a_non_positive_law_are_refused(tmp_path, capsys, law, kind, expected):
    text = _poisson(f"{{synthetic: {{kappa_true: '{law}', at: nodes}}}}", extra=f"  coefficient_input: {kind}\n")
    err = _run_error(tmp_path, capsys, text)
    assert expected in err and "a conductivity must be > 0 everywhere" in err


def test_item15_the_widths_entry_is_named_as_written(tmp_path, capsys):
    err = _run_error(tmp_path, capsys, "problem: poisson_fem\nproblem_options: {n: 3, widths: [2, 2.5, 1]}\n")
    assert "widths[1] must be a whole number >= 1, got 2.5" in err


def test_item13_device_label_seeds_and_huge_integers(tmp_path, capsys):
    assert "device 'meta': invfem runs on cpu or cuda" in \
        _run_error(tmp_path, capsys, "problem: poisson_fem\ndevice: meta\n")
    assert "seeds must be a list of integers in [0, 2**63)" in \
        _run_error(tmp_path, capsys, "problem: poisson_fem\nseeds: [99999999999999999999999]\n")
    assert "widths[1] must be a whole number >= 1" in \
        _run_error(tmp_path, capsys, "problem: poisson_fem\nproblem_options: {n: 3, widths: [2, -3, 1]}\n")
    assert "needs about" in _run_error(tmp_path, capsys, "problem: poisson_fem\nproblem_options: "
                                       "{n: 3, widths: [2, 99999999999999999999999, 1]}\n")
    label = "a" * 300
    text = STUDY.format(output=tmp_path / "out", extra=f", label: {label}", top="")
    assert "is 300 characters long; at most 100" in _run_error(tmp_path, capsys, text, command="compare")


def test_item13_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    text = STUDY.format(output=tmp_path / "out", extra="", top="")
    err = _run_error(tmp_path, capsys, text, "--scheduler", "tcp://127.0.0.1:1", command="compare")
    assert "--scheduler tcp://127.0.0.1:1: no dask scheduler answered" in err


def test_item13_report_on_a_study_json_of_bad_types(tmp_path, capsys):
    import json

    from invfem.cli import main

    compare(_study(tmp_path, "s"), quiet=True)
    study = tmp_path / "out" / "study.json"
    data = json.loads(study.read_text())
    for key, value in (("seeds", "zero"), ("methods", 3), ("loss_threshold", "low")):
        study.write_text(json.dumps({**data, key: value}))
        assert main(["report", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"invfem: error: {study}: not a study of invfem compare") and "\n" not in err, err


# item 9: sizes estimated before any allocation


@pytest.mark.parametrize("text,expected", [
    ("problem: poisson_fem\nproblem_options: {n: 100000}\n", "n = 100000, m = 100000 (a mesh of 2e+10 triangles)"),
    (_poisson(SYNTHETIC, mesh="{lshape: {refine: 14}}"), "lshape refine 14 (3.22e+09 triangles)"),
    (_poisson("{synthetic: {kappa_true: '1', at: 1.0e+9}}"), "at: 1e+09 synthetic points"),
    ("problem: heat\nproblem_options: {mesh: {unit_square: {n: 4}}, n_steps: 100000000, network: {widths: [3]}, "
     "observations: {synthetic: {kappa_true: '1', at: nodes}}}\n", "n_steps: 100000000 (states of 25 dofs)"),
    ("problem: poisson_fem\nproblem_options: {n: 3, widths: [2, 100000, 100000, 1]}\n", "widths [2, 100000, 100000, 1]"),
    ("problem: poisson_fem\nproblem_options: {n: 3, widths: [2, 3000, 3000, 1]}\nmethod: trust-exact\n",
     "method trust-exact: the 9015001 x 9015001 Hessian"),   # start/end: eigenpairs from HVPs at this size
])
def test_item9_sizes_beyond_the_memory_are_refused_at_once(tmp_path, capsys, monkeypatch, text, expected):
    import time

    monkeypatch.setenv("INVFEM_MAX_MEMORY", "16G")       # the same verdict on every machine
    t0 = time.perf_counter()
    err = _run_error(tmp_path, capsys, text)
    assert expected in err and "needs about" in err and "INVFEM_MAX_MEMORY" in err, err
    assert time.perf_counter() - t0 < 20                     # not after minutes of swapping


def test_item9_a_law_file_with_huge_widths_and_the_override(tmp_path, monkeypatch):
    import torch

    from invfem.law import FORMAT, load_kappa
    from invfem.resources import ResourceError

    path = tmp_path / "law.pt"
    torch.save({"format": FORMAT, "widths": [2, 100000, 100000, 1], "activation": "tanh", "positivity": None,
                "shift": 0.0, "coefficient_input": "x", "theta": torch.zeros(5), "metadata": {}}, path)
    monkeypatch.setenv("INVFEM_MAX_MEMORY", "16G")
    with pytest.raises(ResourceError, match=r"widths \[2, 100000, 100000, 1\] \(1e\+10 parameters\) needs about"):
        load_kappa(path)
    from invfem.fem.meshes import unit_square

    monkeypatch.setenv("INVFEM_MAX_MEMORY", "1M")
    with pytest.raises(ResourceError, match="1 MB available"):
        unit_square(200)
    monkeypatch.setenv("INVFEM_MAX_MEMORY", "off")
    assert unit_square(200).t.shape[1] == 80000
    monkeypatch.setenv("INVFEM_MAX_MEMORY", "lots")
    with pytest.raises(ConfigError, match="INVFEM_MAX_MEMORY='lots': expected a size"):
        unit_square(2)


def test_item9_a_csv_is_read_in_about_the_memory_of_its_values(tmp_path):
    import tracemalloc

    import numpy as np

    from invfem.fem.observations import read_observations

    n = 200_000
    rng = np.random.default_rng(0)
    path = tmp_path / "big.csv"
    np.savetxt(path, rng.uniform(size=(n, 4)), delimiter=",", header="x,y,u,sigma", comments="", fmt="%.17g")
    tracemalloc.start()
    data = read_observations(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    values = n * 4 * 8
    assert data.values.shape == (n,) and data.lines[-1] == n + 1
    assert peak < 6 * values, f"peak {peak / 2**20:.1f} MB for {values / 2**20:.1f} MB of values"   # genfromtxt: 24x


def test_item2_10_ctrl_c_during_invfem_run_exits_130_and_keeps_the_finished_seeds(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    problem = tmp_path / "slow_second.py"             # seed 1 takes a minute to build: interrupted there
    problem.write_text("import time\nfrom invfem.problems import poisson_fem\n"
                       "def make_problem(seed=0):\n"
                       "    if seed == 1:\n        time.sleep(60)\n"
                       "    return poisson_fem.make_problem(seed=seed, n=3)\n")
    config = tmp_path / "run.yaml"
    out = tmp_path / "out"
    config.write_text(f"problem: {problem}\nmethod: adam\noptions: {{maxiter: 200}}\nseeds: [0, 1]\n"
                      f"hessian_at_start: false\nhessian_at_end: false\noutput: {out}\n")
    proc = subprocess.Popen([sys.executable, "-m", "invfem.cli", "run", str(config), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "results.json").exists():
            time.sleep(0.1)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "terminate called" not in err, err[-2000:]
    assert "interrupted; the seeds that finished are in results.json" in err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0] and runs[0]["nit"] == 200
    assert (out / "theta_seed0.pt").is_file()


def test_item2_a_mesh_with_unused_nodes_trains_and_writes_every_file(tmp_path, capsys):
    """gmsh files often hold geometry points no triangle uses: the VTU writer failed on them after
    the training. They are dropped when the mesh is read (named boundaries kept)."""
    import json

    import meshio
    import numpy as np
    import skfem

    from invfem.cli import main
    from invfem.fem import load_mesh
    from invfem.fem.export import write_gmsh

    m = skfem.MeshTri.init_lshaped().refined(1)
    p = np.column_stack([[[9.0, 9.0, 9.0], [8.0, 7.0, 6.0]], m.p])          # 3 unused nodes first
    mesh = skfem.MeshTri(p, m.t + 3).with_boundaries({"left": lambda x: np.isclose(x[0], -1)})
    path = write_gmsh(tmp_path / "unused.msh", mesh)
    back = load_mesh(path)
    assert back.p.shape[1] == m.p.shape[1] and np.allclose(back.p[0, back.facets[:, back.boundaries["left"]]], -1)
    config = tmp_path / "run.yaml"
    config.write_text(_poisson(SYNTHETIC, mesh=str(path)) + f"output: {tmp_path / 'out'}\n")
    assert main(["run", str(config), "--quiet"]) == 0, capsys.readouterr().err
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert "failures" not in run and "fields_seed0.vtu" in run["files"] and "kappa_seed0.png" in run["files"]
    assert meshio.read(tmp_path / "out" / "fields_seed0.vtu").points.shape[0] == m.p.shape[1]


def test_item11_every_file_of_invfem_run_honours_the_umask(tmp_path):
    import stat

    from invfem.cli import main

    old = os.umask(0o027)
    try:
        assert main(["run", str(_run_config(tmp_path)), "--quiet"]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert {"results.json", "theta_seed0.pt", "kappa_seed0.pt", "fields_seed0.vtu", "kappa_seed0.png", "loss.png"} \
        <= set(modes)
    assert set(modes.values()) == {0o640}, modes

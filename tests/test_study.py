"""invfem compare: records, summary, resume after SIGKILL, parallel executors, report, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from invfem.cli import main
from invfem.experiment import compare, load_study, write_report
from invfem.experiment.run import load_problem

STUDY = """
problem: poisson_fem
problem_options: {{n: 3, widths: [2, 6, 6, 1]}}
seeds: [0, 1]
maxiter: {maxiter}
diagnostics_every: 10
checkpoint_every: 5
threads_per_run: 1
methods:
  - trust-exact
  - {{method: adam, options: {{lr: 0.01}}}}
output: {output}
"""


def write_study(folder: Path, output: Path, maxiter=25, text=STUDY) -> Path:
    path = folder / f"study-{output.name}.yaml"
    path.write_text(text.format(maxiter=maxiter, output=output))
    return path


def summary(output: Path) -> list[dict]:
    with open(output / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_study_writes_records_summary_and_figures(tmp_path):
    out = tmp_path / "out"
    records = compare(write_study(tmp_path, out), quiet=True)
    assert [(r["label"], r["seed"]) for r in records] == [("trust-exact", 0), ("trust-exact", 1), ("adam", 0),
                                                           ("adam", 1)]
    rows = summary(out)
    assert [(r["method"], int(r["seed"])) for r in rows] == [(r["label"], r["seed"]) for r in records]
    for row in rows:
        folder = out / "runs" / f"{row['method']}-seed{row['seed']}"
        record = json.loads((folder / "record.json").read_text())
        theta = torch.load(folder / "theta.pt")
        p = load_problem("poisson_fem", seed=int(row["seed"]), n=3, widths=[2, 6, 6, 1])
        assert float(row["loss"]) == pytest.approx(float(p.loss(theta)), rel=1e-12, abs=1e-300)
        assert record["finished"] and len(record["history"]) == record["nit"] + 1
        assert {"n_positive", "n_negative", "kappa_error", "wall_time"} <= set(row) and row["kappa_error"]
        points = record["diagnostics"]["points"]
        assert [p["iter"] for p in points] == [0, 10, 20] and "cos_theta1" in points[0]
        final = record["diagnostics"]["final"]
        assert final["n_positive"] + final["n_negative"] + final["n_zero"] == p.n_params
        assert {"profiles", "magnitudes", "activations", "network_loss", "kappa"} <= set(final)
        assert not (folder / "checkpoint.pt").exists()
    for name in ("summary.md", "loss_iterations.png", "loss_time.png", "spectra.png", "positive_eigenvalues.png",
                 "angles.png", "weights.png", "activations.png", "profiles.png", "kappa.png", "kappa_error.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "summary.md").read_text()
    assert "| trust-exact | 2 |" in md and "| adam | 2 |" in md
    # the report rebuilds from the records alone
    (out / "summary.csv").unlink()
    (out / "spectra.png").unlink()
    write_report(out, log=lambda *a: None)
    assert summary(out) == rows and (out / "spectra.png").is_file()


def _launch(config: Path):
    return subprocess.Popen([sys.executable, "-m", "invfem.cli", "compare", str(config), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc, path: Path, timeout=120, ready=lambda path: True):
    """SIGKILL ``proc`` as soon as ``path`` exists (a checkpoint was written) and ``ready(path)``."""
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and ready(path):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before {path} appeared: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{path} never appeared")


def test_resume_after_sigkill_ends_where_an_uninterrupted_study_ends(tmp_path):
    reference = compare(write_study(tmp_path, tmp_path / "ref", maxiter=150), quiet=True)
    out = tmp_path / "killed"
    config = write_study(tmp_path, out, maxiter=150)
    runs = out / "runs"
    _kill_when(_launch(config), runs / "trust-exact-seed0" / "checkpoint.pt")     # in the middle of trust-exact
    _kill_when(_launch(config), runs / "adam-seed0" / "checkpoint.pt")            # in the middle of adam
    finished = runs / "trust-exact-seed0" / "record.json"
    before = finished.stat().st_mtime_ns
    proc = _launch(config)
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    assert finished.stat().st_mtime_ns == before                                  # a finished run is not rerun
    for r in reference:
        folder = runs / f"{r['label']}-seed{r['seed']}"
        record = json.loads((folder / "record.json").read_text())
        if r["seed"] == 0:
            assert record["resumed"] and record["resumed"][0]["exact"], r["label"]
        theta = torch.load(folder / "theta.pt")
        ref = torch.load(tmp_path / "ref" / "runs" / f"{r['label']}-seed{r['seed']}" / "theta.pt")
        torch.testing.assert_close(theta, ref, rtol=0, atol=1e-12)
        assert record["nit"] == r["nit"] and [h["f"] for h in record["history"]] == [h["f"] for h in r["history"]]


def _comparable(rows):
    return [{k: v for k, v in row.items() if k not in ("wall_time", "time_to_threshold")} for row in rows]


def test_parallel_executors_give_the_serial_summary(tmp_path):
    serial = tmp_path / "serial"
    compare(write_study(tmp_path, serial), quiet=True)
    pool = tmp_path / "pool"
    assert main(["compare", str(write_study(tmp_path, pool)), "--workers", "2", "--quiet"]) == 0
    dask = tmp_path / "dask"
    compare(write_study(tmp_path, dask), executor="dask", workers=2, quiet=True)
    assert _comparable(summary(pool)) == _comparable(summary(serial))
    assert _comparable(summary(dask)) == _comparable(summary(serial))


def test_corrupt_record_is_named_and_rerun_and_nothing_else_is_touched(tmp_path):
    out = tmp_path / "out"
    config = write_study(tmp_path, out)
    compare(config, quiet=True)
    bad = out / "runs" / "adam-seed1" / "record.json"
    bad.write_text(bad.read_text()[:100])                                  # truncated
    others = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/record.json") if p != bad}
    messages = []
    compare(load_study(config), log=messages.append)
    assert any(str(bad) in m and "unreadable record" in m for m in messages)
    assert json.loads(bad.read_text())["finished"]
    assert {p: p.stat().st_mtime_ns for p in others} == others


def _assert_one_line_errors(tmp_path, capsys, cases: dict) -> None:
    """``invfem compare`` on each config text exits 2 with one line holding the expected words."""
    for expected, text in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        assert main(["compare", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, (expected, err)


def test_study_bad_input_one_line_errors(tmp_path, capsys):
    base = "problem: poisson_fem\nproblem_options: {n: 3}\n"
    cases = {
        "unknown method 'trust-magic'": base + "methods: [trust-magic]\n",
        "duplicate label 'trust-exact'": base + "methods: [trust-exact, {method: trust-exact}]\n",
        "methods[tr]: unknown option(s) ['radius']": base + "methods: [{label: tr, method: trust-exact, "
                                                           "options: {radius: 2}}]\n",
        "unknown key(s) ['method']": base + "method: trust-exact\nmethods: [adam]\n",
        "missing required key 'methods'": base,
        "unknown option 'nn' of poisson_fem": "problem: poisson_fem\nproblem_options: {nn: 3}\nmethods: [adam]\n",
    }
    _assert_one_line_errors(tmp_path, capsys, cases)
    blocker = tmp_path / "a-file"                 # a folder cannot be made under a file (even as root)
    blocker.write_text("x")
    path = write_study(tmp_path, blocker / "out")
    assert main(["compare", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "output folder" in err and "is not writable" in err and "\n" not in err


def test_a_failing_run_is_recorded_and_the_study_goes_on(tmp_path, capsys):
    # seed 3 of this tiny net starts with kappa <= 0: that run fails, the others finish
    out = tmp_path / "out"
    text = STUDY.replace("seeds: [0, 1]", "seeds: [0, 3]").replace("  - {{method: adam, options: {{lr: 0.01}}}}\n", "")
    config = write_study(tmp_path, out, maxiter=3, text=text)
    assert main(["compare", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "1 of 2 runs failed (trust-exact-seed3" in err and "\n" not in err
    failed = json.loads((out / "runs" / "trust-exact-seed3" / "record.json").read_text())
    assert failed["failed"] and "kappa <= 0" in failed["error"]
    rows = summary(out)
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "1"), ("3", "failed")]
    assert "kappa <= 0" in rows[1]["message"] and float(rows[0]["loss"]) > 0
    assert "Failed: trust-exact seed 3" in (out / "summary.md").read_text()


def test_changed_settings_rerun_a_finished_run(tmp_path):
    out = tmp_path / "out"
    text = STUDY.replace("seeds: [0, 1]", "seeds: [0]").replace("  - {{method: adam, options: {{lr: 0.01}}}}\n", "")
    first = compare(write_study(tmp_path, out, maxiter=3, text=text), quiet=True)[0]
    again = compare(write_study(tmp_path, out, maxiter=3, text=text), quiet=True)[0]
    assert again["nit"] == first["nit"] == 3                               # skipped: same record
    messages = []
    third = compare(load_study(write_study(tmp_path, out, maxiter=5, text=text)), log=messages.append)[0]
    assert third["nit"] == 5 and any("written for other settings" in m for m in messages)


CHAIN = """
problem: poisson_fem
problem_options: {{n: 3, widths: [2, 6, 6, 1]}}
seeds: [0]
maxiter: {maxiter}
diagnostics_every: 10
checkpoint_every: 5
threads_per_run: 1
methods:
  - label: adam-then-tk
    stages: [{{method: adam, options: {{maxiter: 20, lr: 0.01}}}}, {{method: trust-krylov, options: {{maxiter: 400}}}}]
output: {output}
"""


def test_a_chain_is_one_run_and_resumes_inside_its_second_stage(tmp_path):
    from invfem.experiment.records import CorruptRecord, load_torch

    reference = compare(write_study(tmp_path, tmp_path / "ref", text=CHAIN), quiet=True)[0]
    assert [s["method"] for s in reference["stages"]] == ["adam", "trust-krylov"]
    assert reference["nit"] == sum(s["nit"] for s in reference["stages"]) == len(reference["history"]) - 1
    out = tmp_path / "killed"
    config = write_study(tmp_path, out, text=CHAIN)

    def in_stage_two(path):
        try:
            return load_torch(path)["optimizer"]["stage"] == 1
        except (CorruptRecord, KeyError, OSError):
            return False

    _kill_when(_launch(config), out / "runs" / "adam-then-tk-seed0" / "checkpoint.pt", ready=in_stage_two)
    proc = _launch(config)
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    record = json.loads((out / "runs" / "adam-then-tk-seed0" / "record.json").read_text())
    assert record["resumed"] and record["resumed"][0]["iteration"] > 20 and record["resumed"][0]["exact"]
    torch.testing.assert_close(torch.load(out / "runs" / "adam-then-tk-seed0" / "theta.pt"),
                               torch.load(tmp_path / "ref" / "runs" / "adam-then-tk-seed0" / "theta.pt"),
                               rtol=0, atol=1e-12)
    assert [h["f"] for h in record["history"]] == [h["f"] for h in reference["history"]]
    rows = summary(tmp_path / "ref")
    assert rows[0]["method"] == "adam-then-tk" and int(rows[0]["nit"]) == reference["nit"]


def test_chain_config_errors(tmp_path, capsys):
    base = "problem: poisson_fem\nproblem_options: {n: 3}\nmethods:\n"
    cases = {
        "stages[1]: unknown method 'krylov'": base + "  - {stages: [adam, krylov]}\n",
        "a chain has 'stages' instead of 'method' and 'options'": base + "  - {method: adam, stages: [adam, bfgs]}\n",
        "stages must list at least two methods": base + "  - {stages: [adam]}\n",
        "methods[adam+bfgs] stage bfgs: unknown option(s) ['lr']": base + "  - {stages: [adam, {method: bfgs, "
                                                                         "options: {lr: 1}}]}\n",
    }
    _assert_one_line_errors(tmp_path, capsys, cases)


def test_variants_are_studies_of_their_own_and_stop_loss_ends_a_run(tmp_path, capsys):
    config = tmp_path / "variants.yaml"
    config.write_text(f"""
problem: regression
problem_options: {{n_points: 60, widths: [1, 6, 6, 1], test_points: 50}}
variants:
  line: {{target: linear}}
  wave: {{target: sin5}}
seeds: [0]
maxiter: 60
stop_loss: 1.0e-3
diagnostics_every: 0
methods:
  - trust-exact
  - {{label: adam-then-tr, stages: [{{method: adam, options: {{maxiter: 3}}}}, trust-exact]}}
output: {tmp_path / "out"}
""")
    assert main(["compare", str(config), "--quiet"]) == 0
    for name, target in (("line", "linear"), ("wave", "sin5")):
        rows = summary(tmp_path / "out" / name)
        assert [r["method"] for r in rows] == ["trust-exact", "adam-then-tr"]
        study = json.loads((tmp_path / "out" / name / "study.json").read_text())
        assert study["problem_options"] == {"n_points": 60, "widths": [1, 6, 6, 1], "test_points": 50, "target": target}
        for r in rows:
            record = json.loads((tmp_path / "out" / name / "runs" / f"{r['method']}-seed0" / "record.json").read_text())
            if float(r["loss"]) <= 1e-3 and int(r["nit"]) < 60 + 3:
                assert "stop_loss" in record["message"] and record["history"][-2]["f"] > 1e-3
    line = json.loads((tmp_path / "out" / "line" / "runs" / "trust-exact-seed0" / "record.json").read_text())
    assert "stop_loss 0.001 reached" in line["message"] and line["loss"] <= 1e-3 and line["nit"] < 60
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("wave: {target: sin5}", "wave: {taget: sin5}")
                   .replace(str(tmp_path / "out"), str(tmp_path / "bad-out")))
    assert main(["compare", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "variants[wave]" in err and "taget" in err and "\n" not in err
    assert not (tmp_path / "bad-out").exists()                    # every variant checked before any run


def test_every_shipped_study_config_validates():
    from invfem.experiment import load_studies

    configs = sorted((Path(__file__).parent.parent / "configs").glob("study_*.yaml"))
    assert len(configs) >= 7
    for path in configs:
        studies = load_studies(path)
        assert studies and all(study.runs() for _, study in studies), path


LSQ_STUDY = """
problem: poisson_fem
problem_options: {{n: 3, widths: [2, 6, 6, 1]}}
seeds: [0]
maxiter: {maxiter}
diagnostics_every: 10
checkpoint_every: 3
methods:
  - {{method: trf, options: {{ftol: 0, xtol: 0, gtol: 0}}}}
  - {{label: gn, method: trust-exact, options: {{gtol: 0, hessian: gauss-newton}}}}
  - label: trf-then-exact
    stages: [{{method: trf, options: {{maxiter: 5}}}}, {{method: trust-exact, options: {{maxiter: 10}}}}]
output: {output}
"""


def test_least_squares_methods_and_chains_run_in_a_study(tmp_path):
    out = tmp_path / "out"
    records = {r["label"]: r for r in compare(write_study(tmp_path, out, maxiter=20, text=LSQ_STUDY), quiet=True)}
    assert set(records) == {"trf", "gn", "trf-then-exact"} and not any(r.get("failed") for r in records.values())
    p = load_problem("poisson_fem", seed=0, n=3, widths=[2, 6, 6, 1])
    loss0 = float(p.loss(p.theta0))
    for label, record in records.items():
        theta = torch.load(out / "runs" / f"{label}-seed0" / "theta.pt")
        assert record["loss"] == pytest.approx(float(p.loss(theta)), rel=1e-10, abs=1e-300)   # f = ||r||^2
        assert record["loss"] < 1e-6 * loss0, label
    assert [s["method"] for s in records["trf-then-exact"]["stages"]] == ["trf", "trust-exact"]


def test_compare_methods_option_runs_only_the_named_labels(tmp_path, capsys):
    out = tmp_path / "out"
    config = write_study(tmp_path, out, maxiter=5, text=LSQ_STUDY)
    assert main(["compare", str(config), "--methods", "gn", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["gn-seed0"]
    assert main(["compare", str(config), "--methods", "nope", "--quiet"]) != 0
    assert "unknown label(s) ['nope']" in capsys.readouterr().err


def test_a_study_above_the_low_rank_size_takes_its_diagnostics_from_dominant_eigenpairs(tmp_path, monkeypatch):
    """Issue 21: above LOW_RANK_ABOVE parameters invfem compare forms no P x P matrix: the spectra at the
    checkpoints and at the end are the dominant eigenpairs from Hessian-vector products (threshold and
    rank lowered here so that a tiny study crosses it), the record says the rank, it resumes as valid,
    and the pairs' eigenvalues are the dense Hessian's largest in magnitude within the reported error."""
    from invfem.diagnostics.curvature import spectrum
    from invfem.experiment import run as run_module

    monkeypatch.setattr(run_module, "LOW_RANK_ABOVE", 20)
    monkeypatch.setattr(run_module, "DEFAULT_RANK", 6)
    out = tmp_path / "out"
    text = STUDY.replace("seeds: [0, 1]", "seeds: [0]").replace("  - trust-exact\n", "  - trust-krylov\n")
    records = compare(write_study(tmp_path, out, maxiter=10, text=text), quiet=True, workers=1)
    for record in records:
        final = record["diagnostics"]["final"]
        assert final["rank"] == 6 and len(final["eigenvalues"]) == 6
        assert all(point["n_positive"] + point["n_negative"] + point["n_zero"] == 6
                   for point in record["diagnostics"]["points"])
        theta = torch.load(out / "runs" / f"{record['label']}-seed0" / "theta.pt")
        p = load_problem("poisson_fem", seed=0, n=3, widths=[2, 6, 6, 1])
        dense = torch.tensor(spectrum(p.hessian(theta))["eigenvalues"])
        top = dense[torch.argsort(dense.abs(), descending=True)[:6]].sort().values
        found = torch.tensor(final["eigenvalues"])
        assert bool(((found - top).abs() <= final["error_estimate"] * (1 + 1e-9) + 1e-12).all()), (found, top)
    again = compare(write_study(tmp_path, out, maxiter=10, text=text), quiet=True, workers=1)
    assert [r["loss"] for r in again] == [r["loss"] for r in records]          # read back as finished, not rerun

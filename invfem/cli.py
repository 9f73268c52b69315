"""Command line: ``invfem run CONFIG``, ``invfem compare STUDY``, ``invfem report OUTPUT``."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from invfem.errors import InvfemError
from invfem.runtime import reuse_freed_memory


def main(argv=None, exit_at_once: bool = False) -> int:
    """Parse ``argv`` and run the command; returns the exit code. ``exit_at_once`` (the ``invfem``
    command, :func:`entry`): a ``run`` or ``report`` that succeeded ends the process with
    ``os._exit(0)`` once stdout and stderr are flushed, its files all written and closed."""
    parser = argparse.ArgumentParser(prog="invfem", description="PDE-constrained inverse problems with exact Hessians")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="build a problem from a YAML config, inspect it at theta0 and train")
    run.add_argument("config")
    run.add_argument("--output", help="output folder (overrides the config)")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (override the config)")
    run.add_argument("--method", help="training method (overrides the config's; its options that the new method "
                                      "does not take are dropped, with a message)")
    run.add_argument("--maxiter", type=int, help="iteration budget (overrides the options' maxiter)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    study = sub.add_parser("compare", help="run a study: methods x seeds on one problem, resumable, with a report")
    study.add_argument("config")
    study.add_argument("--output", help="output folder (overrides the config)")
    study.add_argument("--seeds", type=int, nargs="+", help="seeds (override the config)")
    study.add_argument("--maxiter", type=int, help="default iteration budget (overrides the config's; methods that set "
                                                   "their own maxiter keep it)")
    study.add_argument("--methods", nargs="+", metavar="LABEL", help="run only the methods with these labels")
    study.add_argument("--time-limit", type=float, help="default wall-time limit per run, seconds")
    study.add_argument("--workers", type=int, help="runs in parallel in a local process pool (joblib)")
    study.add_argument("--scheduler", help="address of a dask-distributed scheduler to submit the runs to")
    study.add_argument("--executor", choices=["serial", "processes", "dask"], help="overrides the config's")
    study.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    report = sub.add_parser("report", help="rebuild summary.csv, summary.md and the figures of a study from its records")
    report.add_argument("output")
    args = parser.parse_args(argv)

    torch.set_default_dtype(torch.float64)
    reuse_freed_memory()
    try:
        if args.command == "run":
            from invfem.experiment import load_config, run_experiment
            from invfem.experiment.run import run_failures

            config = load_config(args.config, output=args.output, seeds=args.seeds, method=args.method,
                                 maxiter=args.maxiter, log=print)
            results = run_experiment(config, progress=not args.quiet)
            failures = run_failures(results)
            if failures:
                print("invfem: " + "\ninvfem: ".join(failures) + "\ninvfem: everything else is written (results.json "
                      "says what failed)", file=sys.stderr)
                return 1
        elif args.command == "compare":
            from invfem.experiment import compare, load_studies
            from invfem.experiment.study import select_methods

            if args.workers is not None and args.workers < 1:
                raise InvfemError(f"--workers must be >= 1, got {args.workers}")
            studies = load_studies(args.config, output=args.output, seeds=args.seeds, maxiter=args.maxiter,
                                   time_limit=args.time_limit)       # every variant checked before any run
            records = []
            studies = [(name, select_methods(study, args.methods)) for name, study in studies]
            for name, study in studies:
                if name is not None and not args.quiet:
                    print(f"variant {name}: {study.output}")
                records += compare(study, workers=args.workers, scheduler=args.scheduler, executor=args.executor,
                                   quiet=args.quiet)
            failed = [f"{r['label']}-seed{r['seed']}" for r in records if r.get("failed")]
            if failed:
                print(f"invfem: {len(failed)} of {len(records)} runs failed ({', '.join(failed)}; their record.json "
                      f"says why); the report covers the others", file=sys.stderr)
                return 1
        else:
            from invfem.experiment import write_report

            write_report(args.output)
    except InvfemError as exc:
        print(f"invfem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = {"run": "the seeds that finished are in results.json, with their files",
                "compare": "finished runs and the last checkpoints are kept (run the same command to resume)",
                "report": "the previous report files are whole (each is replaced atomically)"}[args.command]
        print(f"invfem: interrupted; {kept}", file=sys.stderr)
        if exit_at_once:        # no interpreter teardown: torch's threads abort it ("terminate called ...")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    if exit_at_once and args.command in ("run", "report"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def entry() -> None:
    """The ``invfem`` command: :func:`main` with ``exit_at_once``. The interpreter's own teardown
    of torch's modules took 0.6-1.2 s of a 15 s ``invfem run`` and does nothing for a finished
    run; ``compare`` (whose worker pools must shut down) and failed commands exit normally; an
    interrupted command exits 130 at once (after its message and the lock's release)."""
    sys.exit(main(exit_at_once=True))


if __name__ == "__main__":
    entry()

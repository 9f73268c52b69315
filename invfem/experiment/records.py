"""Files of a study that must survive a crash: written atomically, read with their faults named.

Every file is written by :mod:`invfem.files` (a temporary name in the same folder, fsync,
rename), so a reader sees either the old file or the new one, never a half-written one; here:
the folder of a run, the schema a record must satisfy, the folder lock, and reading back.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import torch

from invfem.errors import FolderInUse, InvfemError
from invfem.files import umask


class CorruptRecord(InvfemError):
    """A record or checkpoint that cannot be read (truncated, not JSON, not a torch file)."""


def run_dir(output, label: str, seed: int) -> Path:
    """The folder of one run of a study: ``OUTPUT/runs/<label>-seed<k>`` (record, theta, checkpoint)."""
    return Path(output) / "runs" / f"{label}-seed{seed}"


def final_theta(output, label: str, seed: int) -> torch.Tensor:
    """One finished run's final theta (``theta.pt`` in :func:`run_dir`; CorruptRecord when unreadable)."""
    return load_torch(run_dir(output, label, seed) / "theta.pt")


#: what a study record must hold, and of which type (a record that parses but lacks one is redone)
_NUMBER = (int, float)
FINISHED_KEYS = {"label": str, "seed": int, "loss": _NUMBER, "gnorm": _NUMBER, "nit": int, "status": int,
                 "message": str, "wall_time": _NUMBER, "nfev": int, "njev": int, "nhev": int, "n_positive": int,
                 "n_negative": int, "history": list, "diagnostics": dict}
FAILED_KEYS = {"label": str, "seed": int, "error": str}


def record_problem(record, folder=None) -> str | None:
    """What is wrong with a study record (None: nothing): a missing key or one of the wrong
    type (:data:`FINISHED_KEYS` / :data:`FAILED_KEYS`), history entries without ``iter``/``f``/
    ``time``, and (with ``folder``) a ``theta.pt`` that does not load as a finite 1-d tensor of
    the run's size (the final spectrum's length)."""
    if not isinstance(record, dict):
        return f"not a mapping ({type(record).__name__})"
    keys = FAILED_KEYS if record.get("failed") else FINISHED_KEYS
    for key, kind in keys.items():
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"key {key!r} missing or not a {getattr(kind, '__name__', 'number')}"
    if record.get("failed"):
        return None
    if not all(isinstance(h, dict) and all(isinstance(h.get(k), _NUMBER) for k in ("iter", "f", "time"))
               for h in record["history"]) or not record["history"]:
        return "history entries without iter, f and time"
    if not isinstance(record["diagnostics"].get("points"), list):
        return "diagnostics without points"
    if folder is not None:
        try:
            theta = load_torch(Path(folder) / "theta.pt")
        except CorruptRecord as exc:
            return str(exc)
        if not isinstance(theta, torch.Tensor) or theta.ndim != 1 or not bool(torch.isfinite(theta).all()):
            return "theta.pt is not a finite 1-d tensor"
        final = record["diagnostics"].get("final")
        if isinstance(final, dict) and "rank" not in final and all(
                isinstance(final.get(k), int) for k in ("n_positive", "n_negative", "n_zero")):
            size = final["n_positive"] + final["n_negative"] + final["n_zero"]   # the spectrum has one value per parameter
            if theta.numel() != size:
                return f"theta.pt holds {theta.numel()} parameters, the run's Hessian had {size}"
    return None


LOCK_NAME = ".invfem.lock"


@contextlib.contextmanager
def folder_lock(folder, what: str = "invfem compare", log=print):
    """Hold ``folder/.invfem.lock`` (host, pid, start time) while the block runs, so that a second
    process on the same folder stops with a message naming the holder instead of redoing every
    run. A lock left by a process that is gone (same host, no such pid) is taken over (logged);
    one from another host is respected: delete the file if that process is gone."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~umask())
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is None or _gone(holder):
                log(f"{path}: a stale lock ({_describe(holder)}): taken over")
                path.unlink(missing_ok=True)
                continue
            raise FolderInUse(f"{folder} is in use by {what} ({_describe(holder)}); wait for it to finish, or "
                              f"delete {path} if that process is gone") from None
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        break
    else:
        raise FolderInUse(f"{folder}: could not take {path} (another process keeps recreating it)")
    try:
        yield
    finally:
        if _lock_holder(path) == mine:
            path.unlink(missing_ok=True)


def _lock_holder(path: Path) -> dict | None:
    """The lock's content, None where it is unreadable (a holder that died while writing it, if
    older than 10 s; a younger unreadable one is being written: treated as held)."""
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("pid"), int):
            return data
    except (OSError, ValueError):
        pass
    try:
        young = time.time() - path.stat().st_mtime < 10
    except OSError:
        return None
    return {"host": socket.gethostname(), "pid": -1, "since": "now"} if young else None


def _gone(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname() or holder["pid"] < 0:
        return False                  # another machine's process (or a lock being written): cannot tell
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:          # alive, another user's
        return False
    return False


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "unreadable"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('since')}"


def read_json(path) -> dict:
    """A JSON record; CorruptRecord naming the file when it is truncated or not JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"{path}: unreadable record ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise CorruptRecord(f"{path}: unreadable record (top level is not a mapping)")
    return data


def load_torch(path) -> dict:
    """A checkpoint saved by :func:`invfem.files.save_torch` (plain types and tensors only); CorruptRecord when unreadable."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, ...: name the file, rerun the run
        raise CorruptRecord(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None

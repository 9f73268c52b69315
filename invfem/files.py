"""One atomic writer for every file invfem writes (runs, studies, reports, laws, ParaView exports).

A file goes to a temporary name in its own folder, is flushed to disk and then renamed over
the target (``os.replace`` is atomic on POSIX and Windows): a reader, or the next run after a
crash or a full disk, sees the old file or the new one, never a part of one. The file gets the
mode ``open`` would give it (0666 less the umask; ``mkstemp`` alone makes it 0600, which
collaborators on a shared file system cannot read).

- :func:`atomic_write` ``(path, write)``: ``write(f)`` fills a binary file object;
- :func:`atomic_path` ``(path)``: a context manager yielding a temporary path, for writers that
  take a file name (meshio picks the format from the suffix, which the temporary name keeps);
- :func:`write_text`, :func:`write_json`, :func:`save_torch`, :func:`save_figure` on top of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from invfem.errors import ConfigError


def umask() -> int:
    """The process's umask: from ``/proc/self/status`` where there is one (no window in which
    another thread's files get a wrong mask), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix) to write to; when the block ends
    without an exception, the file is fsync-ed and renamed over ``path``; otherwise it is removed
    and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    tmp = Path(tmp)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~umask())
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path, write) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills the binary file object ``f``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
    return Path(path)


def write_text(path, text: str) -> Path:
    """``text`` (UTF-8) at ``path``, atomically."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


def write_json(path, obj) -> Path:
    """``obj`` as JSON at ``path``, atomically (numpy/torch scalars and arrays as lists)."""
    return write_text(path, json.dumps(obj, indent=1, default=_plain))


def save_torch(path, obj) -> Path:
    """``torch.save(obj)`` at ``path``, atomically (numpy arrays stored as tensors, so that it
    reads back with ``torch.load(..., weights_only=True)``)."""
    obj = _tensors(obj)
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_figure(fig, path, **savefig) -> Path:
    """A matplotlib figure at ``path`` (format from its suffix), atomically."""
    path = Path(path)
    fmt = savefig.pop("format", path.suffix.lstrip(".") or "png")
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig))


def check_writable(folder) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it: ConfigError naming
    the folder and the reason otherwise (before any work is spent on results that cannot be kept)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".invfem-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None
    return folder


def _tensors(obj):
    if isinstance(obj, dict):
        return {k: _tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensors(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _plain(value):
    """JSON for numpy/torch scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

"""The result every invfem optimizer returns (``minimize``, ``minimize_chain``, ``least_squares``)."""

from __future__ import annotations


class OptimizeResult(dict):
    """The fields of scipy's result (``x, fun, jac, nit, nfev, njev, nhev, status, message,
    success``) plus ``history`` (one dict per iteration, entry 0 the start) and ``method``; a
    dict whose keys are also attributes, as scipy's ``OptimizeResult`` (not derived from it, so
    that importing invfem does not import ``scipy.optimize``: 0.25 s of every ``invfem run``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __dir__(self):
        return list(self.keys())

    def __repr__(self):
        width = max(map(len, self), default=0) + 1
        return "\n".join(f"{k.rjust(width)}: {v!r}" for k, v in self.items() if k != "history")

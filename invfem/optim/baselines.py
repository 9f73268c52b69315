"""First-order and quasi-Newton baselines on the same loss: Adam (torch), scipy BFGS and L-BFGS-B.

They share the oracle (counted torch gradients) and the history format of the trust-region
loop (entry 0: the start; entry k: after k iterations), so studies compare like with like.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.optimize
import torch

from invfem.errors import NonFiniteError
from invfem.optim.trust_region import history_entry


def _entry(k, f, g, oracle, start, **step):
    return history_entry(k, f, np.linalg.norm(g), oracle, start, **step)


def adam(oracle, x0, options, callback=None, bounds=None):
    """Adam with a fixed learning rate; stops at ||g|| < gtol, a non-finite loss, or maxiter."""
    start = time.perf_counter()
    x = torch.tensor(x0, dtype=torch.float64)
    opt = torch.optim.Adam([x], lr=options.lr, betas=options.betas)
    f, g = oracle.value_and_grad(x.detach().numpy())
    if not math.isfinite(f):
        raise NonFiniteError(f"fun is not finite at x0 (f = {f})")
    history = [_entry(0, f, g, oracle, start)]
    status = 1
    for k in range(1, options.maxiter + 1):
        if np.linalg.norm(g) < options.gtol:
            status = 0
            break
        old = x.detach().clone()
        x.grad = torch.as_tensor(g)
        opt.step()
        f, g = oracle.value_and_grad(x.detach().numpy())
        history.append(_entry(k, f, g, oracle, start, step_norm=float(torch.linalg.norm(x.detach() - old))))
        if not math.isfinite(f):
            status = 4
            break
        if callback is not None and callback({**history[-1], "x": x.detach().clone()}):
            status = 2
            break
    else:
        status = 0 if np.linalg.norm(g) < options.gtol else 1
    return x.detach().numpy().copy(), f, g, status, history


def scipy_method(name):
    """``scipy.optimize.minimize(method=name)`` fed with exact torch gradients."""

    def run(oracle, x0, options, callback=None, bounds=None):
        start = time.perf_counter()
        last = {}

        def fg(xn):
            f, g = oracle.value_and_grad(xn)
            last.update(x=np.array(xn), f=f, g=g)
            return f, g

        f0, g0 = fg(np.asarray(x0))
        history = [_entry(0, f0, g0, oracle, start)]
        prev = [np.asarray(x0)]

        def cb(intermediate_result):
            xk = np.asarray(intermediate_result.x)
            f, g = (last["f"], last["g"]) if np.array_equal(last["x"], xk) else fg(xk)
            history.append(_entry(len(history), f, g, oracle, start, step_norm=float(np.linalg.norm(xk - prev[0]))))
            prev[0] = xk.copy()
            if callback is not None and callback({**history[-1], "x": oracle.tensor(xk.copy())}):
                raise StopIteration

        scipy_options = {"maxiter": options.maxiter, "gtol": options.gtol}
        if name == "L-BFGS-B":
            scipy_options["ftol"] = 0.0  # stop on the gradient, as the other methods do
        res = scipy.optimize.minimize(fg, np.asarray(x0), jac=True, method=name, bounds=bounds, callback=cb,
                                      options=scipy_options)
        status = {0: 0, 1: 1}.get(int(res.status), 2 if "callback" in str(res.message).lower() else 5)
        f, g = fg(res.x)
        return np.asarray(res.x), f, g, status, history

    return run

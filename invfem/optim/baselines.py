"""First-order and quasi-Newton baselines on the same loss: Adam (torch), scipy BFGS and L-BFGS-B.

They share the oracle (counted torch gradients) and the history format of the trust-region
loop (entry 0: the start; entry k: after k iterations), so studies compare like with like.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from invfem.errors import InvalidTrialPoint, NonFiniteError
from invfem.optim.checkpoint import common_state, restore_common
from invfem.optim.trust_region import history_entry


UNDEFINED_PENALTY = 1e8   # an undefined trial point is shown to scipy as f_last + this (1 + |f_last|)


def _entry(k, f, g, oracle, start, **step):
    return history_entry(k, f, np.linalg.norm(g), oracle, start, **step)


def adam(oracle, x0, options, callback=None, bounds=None, checkpoint=None, resume=None):
    """Adam with a fixed learning rate; stops at ||g|| < gtol, maxiter, or a step to a non-finite or
    undefined loss (status 4, x stays at the last valid point). Checkpoints keep the moments."""
    if resume is None:
        start, k0 = time.perf_counter(), 0
        x = torch.tensor(x0, dtype=torch.float64)
        opt = torch.optim.Adam([x], lr=options.lr, betas=options.betas)
        f, g = oracle.value_and_grad(x.detach().numpy())
        if not math.isfinite(f):
            raise NonFiniteError(f"fun is not finite at x0 (f = {f})")
        history = [_entry(0, f, g, oracle, start)]
    else:
        start, history, k0, x_np, f, g = restore_common(oracle, resume, "adam")
        x = torch.tensor(x_np, dtype=torch.float64)
        opt = torch.optim.Adam([x], lr=options.lr, betas=options.betas)
        opt.load_state_dict(resume["adam"])

    def state():
        return common_state("adam", len(history) - 1, x.detach().numpy(), f, g, history, oracle, start,
                            adam=copy.deepcopy(opt.state_dict()))

    status = 1
    for k in range(k0 + 1, options.maxiter + 1):
        if checkpoint is not None:
            checkpoint.maybe(k - 1, state)
        if np.linalg.norm(g) < options.gtol:
            status = 0
            break
        old = x.detach().clone()
        x.grad = torch.as_tensor(g)
        opt.step()
        f_new, g_new = oracle.trial_value_and_grad(x.detach().numpy())
        if g_new is None or not math.isfinite(f_new):   # Adam has no step to reject: the run ends here
            with torch.no_grad():
                x.copy_(old)
            history.append(_entry(k, f, g, oracle, start, f_trial=f_new, accepted=False))
            status = 4
            break
        f, g = f_new, g_new
        history.append(_entry(k, f, g, oracle, start, step_norm=float(torch.linalg.norm(x.detach() - old))))
        if callback is not None and callback({**history[-1], "x": x.detach().clone()}):
            status = 2
            break
    else:
        status = 0 if np.linalg.norm(g) < options.gtol else 1
    return x.detach().numpy().copy(), f, g, status, history


def scipy_method(name):
    """``scipy.optimize.minimize(method=name)`` fed with exact torch gradients."""

    def run(oracle, x0, options, callback=None, bounds=None, checkpoint=None, resume=None):
        import scipy.optimize     # here, not at import: the other methods never load it (0.25 s of `invfem run`)

        last = {}

        def fg(xn):
            if last and np.array_equal(xn, last["x"]):     # scipy re-asks for x0 and the final x: not a new evaluation
                return last["f"], last["g"].copy()
            try:
                f, g = oracle.value_and_grad(xn)
            except InvalidTrialPoint:
                if not last:
                    raise
                # scipy's line searches cannot reject an undefined point (L-BFGS-B even reports
                # convergence on an inf): show them a value far above the last one, and the last
                # gradient, so that they backtrack; counted as an invalid trial
                oracle.ninvalid += 1
                return last["f"] + UNDEFINED_PENALTY * (1.0 + abs(last["f"])), last["g"].copy()
            last.update(x=np.array(xn), f=f, g=g)
            return f, g

        if resume is None:
            start = time.perf_counter()
            f0, g0 = fg(np.asarray(x0))
            history = [_entry(0, f0, g0, oracle, start)]
        else:               # scipy's memory (inverse Hessian, L-BFGS pairs) is not ours to keep: restart from x
            start, history, _, x0, f0, g0 = restore_common(oracle, resume, "scipy")
            last.update(x=np.array(x0), f=f0, g=g0)
        prev = [np.asarray(x0)]
        done = len(history) - 1

        def cb(intermediate_result):
            xk = np.asarray(intermediate_result.x)
            f, g = (last["f"], last["g"]) if np.array_equal(last["x"], xk) else fg(xk)
            history.append(_entry(len(history), f, g, oracle, start, step_norm=float(np.linalg.norm(xk - prev[0]))))
            prev[0] = xk.copy()
            # the callback first (as the other runners do): the checkpoint of iteration k then holds what the
            # callback recorded at k (a study's diagnostics point), which a resume from k does not redo
            stop = callback is not None and callback({**history[-1], "x": oracle.tensor(xk.copy())})
            if stop:
                raise StopIteration
            if checkpoint is not None:
                checkpoint.maybe(len(history) - 1, lambda: common_state("scipy", len(history) - 1, xk, f, g, history,
                                                                        oracle, start, exact=False))

        if done >= options.maxiter:
            return prev[0], f0, g0, 1, history
        scipy_options = {"maxiter": options.maxiter - done, "gtol": options.gtol}
        if name == "L-BFGS-B":
            scipy_options["ftol"] = 0.0  # stop on the gradient, as the other methods do
        res = scipy.optimize.minimize(fg, np.asarray(x0), jac=True, method=name, bounds=bounds, callback=cb,
                                      options=scipy_options)
        status = {0: 0, 1: 1}.get(int(res.status), 2 if "callback" in str(res.message).lower() else 5)
        f, g = fg(res.x)
        return np.asarray(res.x), f, g, status, history

    return run

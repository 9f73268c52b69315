"""Chains of methods: "Adam for 100 iterations, then trust-krylov from its end point" as one run.

``minimize_chain(fun, x0, [("adam", {"maxiter": 100, "lr": 0.01}), ("trust-krylov", {"maxiter": 200})])``
runs each stage with :func:`invfem.optim.minimize` from the previous stage's last iterate and
returns ONE result: the histories joined (iterations and wall time continue across stages;
each later stage's entry 0, the previous stage's end, is not repeated), the evaluation
counters summed, the last stage's status, and ``stages`` — one summary per stage. A stage
stops on its own budget or criteria and the chain goes on to the next stage — unless the
callback stopped it (status 2): then the chain stops.

Checkpoints name the stage and carry the finished stages' histories, so a chain resumes
inside the stage it was in, exactly where that stage's method resumes exactly.
"""

from __future__ import annotations

from invfem.errors import ConfigError
from invfem.optim.api import METHODS, OptimizeResult, minimize
from invfem.optim.checkpoint import Checkpoint


def chain_label(stages) -> str:
    """The default label of a chain: its methods joined by '+'."""
    return "+".join(method for method, _ in stages)


def check_stages(stages) -> list[tuple[str, dict]]:
    """The stages as (method, options) pairs, or a one-line error naming the bad one."""
    if not isinstance(stages, (list, tuple)) or len(stages) < 2:
        raise ConfigError(f"a chain needs a list of at least two stages (method, options), got {stages!r}")
    out = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, (list, tuple)) or len(stage) != 2 or not isinstance(stage[1] or {}, dict):
            raise ConfigError(f"stage {i} must be a (method, options) pair, got {stage!r}")
        method, options = stage[0], dict(stage[1] or {})
        if method not in METHODS:
            raise ConfigError(f"stage {i}: unknown method {method!r}; valid: {sorted(METHODS)}")
        out.append((method, options))
    return out


def minimize_chain(fun, x0, stages, hess=None, hessp=None, bounds=None, callback=None, checkpoint=None,
                   resume=None, residual=None, residual_jacobian=None) -> OptimizeResult:
    """Run ``stages`` — (method, options) pairs — one after the other from ``x0``.

    ``hess``/``hessp`` go to the stages whose method consumes them; ``bounds`` to those that
    take bounds (the others run unbounded); ``residual``/``residual_jacobian`` to every stage
    (the least-squares methods and Gauss–Newton curvature use them). ``callback`` sees the
    joined iteration numbers and times. ``checkpoint``/``resume`` as for :func:`minimize`.
    """
    stages = check_stages(stages)
    done, start_stage, inner = [], 0, None
    if resume is not None:
        if resume.get("method") != "chain" or resume.get("stages") != [m for m, _ in stages]:
            raise ConfigError(f"cannot resume a {resume.get('method')!r} run as the chain {chain_label(stages)!r}")
        done, start_stage, inner = list(resume["done"]), int(resume["stage"]), resume["inner"]
    x = x0 if not done else done[-1]["x_end"]
    result = None
    for i in range(start_stage, len(stages)):
        method, options = stages[i]
        spec = METHODS[method]
        offset_iter = sum(d["nit"] for d in done)
        offset_time = done[-1]["history"][-1]["time"] if done else 0.0

        def shifted(state, offset_iter=offset_iter, offset_time=offset_time, method=method):
            return {**state, "iter": state["iter"] + offset_iter, "time": state["time"] + offset_time,
                    "stage": method}

        stage_callback = None if callback is None else (lambda state, shift=shifted: callback(shift(state)))
        stage_checkpoint = None
        if checkpoint is not None:
            stage_checkpoint = Checkpoint(
                lambda state, i=i: checkpoint.save({"method": "chain", "stages": [m for m, _ in stages],
                                                    "stage": i, "done": done, "inner": state}),
                checkpoint.every, checkpoint.seconds)
        result = minimize(fun, x, method=method, options=options,
                          hess=hess if spec.derivatives == "hessian" else None,
                          hessp=hessp if spec.derivatives == "hvp" else None,
                          bounds=bounds if spec.bounds else None, callback=stage_callback,
                          checkpoint=stage_checkpoint, resume=inner if i == start_stage else None,
                          residual=residual, residual_jacobian=residual_jacobian)
        inner = None
        history = [shifted(h) for h in result.history]
        done.append({"method": method, "nit": int(result.nit), "status": int(result.status),
                     "message": result.message, "fun": float(result.fun), "nfev": int(result.nfev),
                     "njev": int(result.njev), "nhev": int(result.nhev), "history": history,
                     "x_end": result.x.detach().clone()})
        x = result.x
        if result.status == 2:              # the callback stopped the run: the chain stops with it
            break
    history = list(done[0]["history"])
    for d in done[1:]:
        history += d["history"][1:]
    summaries = [{k: v for k, v in d.items() if k not in ("history", "x_end")} for d in done]
    message = "; ".join(f"{d['method']}: {d['message']} after {d['nit']} iterations" for d in summaries)
    return OptimizeResult(x=result.x, fun=result.fun, jac=result.jac, nit=sum(d["nit"] for d in summaries),
                          nfev=sum(d["nfev"] for d in summaries), njev=sum(d["njev"] for d in summaries),
                          nhev=sum(d["nhev"] for d in summaries), status=result.status, message=message,
                          success=result.success, optimality=result.optimality, history=history,
                          method=chain_label(stages), stages=summaries)
